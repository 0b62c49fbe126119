//! Acting as WeChat pushing an official-account message to the server (`/wechat/mp`).
//!
//! Plain mode: query `signature=sha1(sort(token,timestamp,nonce))&timestamp&nonce&openid`,
//! body = the message XML. Safe mode: body `<xml><ToUserName/><Encrypt/></xml>` and the query
//! adds `encrypt_type=aes&msg_signature=sha1(sort(token,timestamp,nonce,Encrypt))`; the reply
//! must be `<xml><Encrypt/><MsgSignature/><TimeStamp/><Nonce/></xml>` with a valid signature
//! and our appid inside (or `success` / empty when there is nothing to say).

use std::sync::Arc;

use anyhow::{Context as _, anyhow, bail};

use super::crypto;
use super::sign::{ct_eq, sha1_sorted};
use super::state::{Shared, random_digits};
use super::xml;

pub async fn push(
    sh: &Arc<Shared>,
    endpoint_url: &str,
    msg_xml: &str,
    safe_mode: bool,
) -> anyhow::Result<(u16, String)> {
    let shared = sh.clone();
    let url = endpoint_url.to_string();
    let msg = msg_xml.to_string();
    // Runs on the simulator's runtime, where its HTTP client lives.
    let task = sh
        .spawn(async move { push_inner(&shared, &url, &msg, safe_mode).await })
        .ok_or_else(|| anyhow!("simulator is not running"))?;
    task.await.context("push task failed")?
}

pub(super) async fn push_inner(
    sh: &Shared,
    endpoint_url: &str,
    msg_xml: &str,
    safe_mode: bool,
) -> anyhow::Result<(u16, String)> {
    let cfg = &sh.cfg;
    let timestamp = chrono::Utc::now().timestamp().to_string();
    let nonce = random_digits(10);
    let signature = sha1_sorted(&[&cfg.mp_token, &timestamp, &nonce]);
    let parsed = xml::parse(msg_xml.as_bytes()).ok();
    let openid = parsed
        .as_ref()
        .and_then(|x| x.fields.get("FromUserName").cloned());
    let to_user = parsed
        .as_ref()
        .and_then(|x| x.fields.get("ToUserName").cloned())
        .unwrap_or_default();
    // Only followers can message an account: the sender follows it (unless a test made
    // them unfollow).
    if let Some(o) = &openid {
        sh.lock().mp_followers.entry(o.clone()).or_insert(true);
    }

    let mut url = url::Url::parse(endpoint_url).context("endpoint URL")?;
    let body = {
        let mut q = url.query_pairs_mut();
        q.append_pair("signature", &signature)
            .append_pair("timestamp", &timestamp)
            .append_pair("nonce", &nonce);
        if let Some(o) = &openid {
            q.append_pair("openid", o);
        }
        if safe_mode {
            let encrypt = crypto::mp_encrypt(&cfg.mp_aes_key, &cfg.mp_appid, msg_xml)
                .map_err(|e| anyhow!("encrypting: {e}"))?;
            let msg_signature = sha1_sorted(&[&cfg.mp_token, &timestamp, &nonce, &encrypt]);
            q.append_pair("encrypt_type", "aes")
                .append_pair("msg_signature", &msg_signature);
            xml::build(
                "xml",
                [
                    ("ToUserName", to_user.as_str()),
                    ("Encrypt", encrypt.as_str()),
                ],
            )
        } else {
            msg_xml.to_string()
        }
    };
    let resp = sh
        .http
        .post(url)
        .header("Content-Type", "text/xml")
        .body(body)
        .send()
        .await
        .context("pushing the message (WeChat waits 5 s)")?;
    let status = resp.status().as_u16();
    let text = resp.text().await.context("reading the reply")?;
    if !safe_mode || status != 200 {
        return Ok((status, text));
    }
    let trimmed = text.trim();
    if trimmed.is_empty() || trimmed == "success" {
        return Ok((status, text));
    }
    let reply = xml::parse(trimmed.as_bytes()).map_err(|e| anyhow!("reply is not XML: {e}"))?;
    let field = |k: &str| {
        reply
            .fields
            .get(k)
            .cloned()
            .ok_or_else(|| anyhow!("safe-mode reply without {k}: {trimmed}"))
    };
    let encrypt = field("Encrypt")?;
    let given = field("MsgSignature")?;
    let ts = field("TimeStamp")?;
    let nonce = field("Nonce")?;
    let expected = sha1_sorted(&[&cfg.mp_token, &ts, &nonce, &encrypt]);
    if !ct_eq(&given, &expected) {
        bail!("reply MsgSignature does not verify");
    }
    let plain = crypto::mp_decrypt(&cfg.mp_aes_key, &cfg.mp_appid, &encrypt)
        .map_err(|e| anyhow!("decrypting the reply: {e}"))?;
    Ok((status, plain))
}
