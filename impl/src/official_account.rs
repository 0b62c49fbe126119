//! The official account: WeChat pushes messages here (plain or safe mode) and we reply
//! within its 5 seconds. Text commands: `help`, `bind <code>`, `orders`, `status <no>`.

use std::collections::BTreeMap;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

use campus_dal::orders::{self as oq, Scope};
use campus_dal::{time, users};

use crate::cache::Cache;
use crate::db::{Db, DbError};
use crate::wechat::mp_crypto::{MpCrypto, check_signature};
use crate::wechat::pay::xml::{parse_flat, to_xml};

/// WeChat retries a push three times within about 15 s; remember replies a while longer.
const DEDUP_TTL: Duration = Duration::from_secs(60);

/// The official-account service.
#[derive(Clone)]
pub struct OfficialAccount {
    db: Db,
    cache: Cache,
    /// `None`: no official account configured (`WECHAT_MP_TOKEN` unset).
    account: Option<AccountKeys>,
}

/// The account's server token, and its AES key when safe mode is set up.
#[derive(Clone)]
pub struct AccountKeys {
    pub token: SecretString,
    pub crypto: Option<MpCrypto>,
}

#[derive(Debug, thiserror::Error)]
pub enum OfficialAccountError {
    #[error("the official account is not configured")]
    NotConfigured,
    #[error("bad signature")]
    BadSignature,
    #[error("malformed message: {0}")]
    Malformed(String),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Cache(#[from] crate::cache::CacheError),
}

/// The query WeChat signs its pushes with.
#[derive(Clone, Debug, Default, serde::Deserialize)]
pub struct PushQuery {
    #[serde(default)]
    pub signature: String,
    #[serde(default)]
    pub timestamp: String,
    #[serde(default)]
    pub nonce: String,
    pub echostr: Option<String>,
    pub encrypt_type: Option<String>,
    pub msg_signature: Option<String>,
}

const HELP: &str = "Campus Errand 校园跑腿\n\
- bind <code>: link this account (get the code in the mini-program: Me → Link official account)\n\
- orders: your recent orders\n\
- status <order no>: one order's status\n\
- help: this text";

fn text_reply(to: &str, from: &str, content: &str) -> String {
    let mut m = BTreeMap::new();
    m.insert("ToUserName".to_string(), to.to_string());
    m.insert("FromUserName".to_string(), from.to_string());
    m.insert(
        "CreateTime".to_string(),
        chrono::Utc::now().timestamp().to_string(),
    );
    m.insert("MsgType".to_string(), "text".to_string());
    m.insert("Content".to_string(), content.to_string());
    to_xml(&m)
}

impl OfficialAccount {
    pub fn new(db: Db, cache: Cache, account: Option<AccountKeys>) -> Self {
        Self { db, cache, account }
    }

    fn account(&self) -> Result<&AccountKeys, OfficialAccountError> {
        self.account
            .as_ref()
            .ok_or(OfficialAccountError::NotConfigured)
    }

    /// `GET /wechat/mp`: the URL check when the server is configured in WeChat's console.
    pub fn echo(&self, q: &PushQuery) -> Result<String, OfficialAccountError> {
        let token = self.account()?.token.expose_secret();
        if !check_signature(token, &q.timestamp, &q.nonce, &q.signature) {
            return Err(OfficialAccountError::BadSignature);
        }
        Ok(q.echostr.clone().unwrap_or_default())
    }

    /// `POST /wechat/mp`: verifies, decrypts (safe mode), de-duplicates, answers.
    pub async fn message(
        &self,
        q: &PushQuery,
        body: &[u8],
    ) -> Result<String, OfficialAccountError> {
        let account = self.account()?;
        let token = account.token.expose_secret();
        let safe = q.encrypt_type.as_deref() == Some("aes");
        let crypto = if safe {
            Some(
                account
                    .crypto
                    .as_ref()
                    .ok_or(OfficialAccountError::NotConfigured)?,
            )
        } else {
            None
        };
        // Both modes carry the plain signature; safe mode adds msg_signature over Encrypt.
        if !check_signature(token, &q.timestamp, &q.nonce, &q.signature) {
            return Err(OfficialAccountError::BadSignature);
        }
        let outer = parse_flat(body).map_err(|e| OfficialAccountError::Malformed(e.to_string()))?;
        let msg = match &crypto {
            Some(c) => {
                let enc = outer
                    .get("Encrypt")
                    .ok_or_else(|| OfficialAccountError::Malformed("no Encrypt".into()))?;
                let sig = q.msg_signature.as_deref().unwrap_or("");
                let inner = c
                    .decrypt(sig, &q.timestamp, &q.nonce, enc)
                    .map_err(|e| match e {
                        crate::wechat::mp_crypto::MpCryptoError::BadSignature => {
                            OfficialAccountError::BadSignature
                        }
                        other => OfficialAccountError::Malformed(other.to_string()),
                    })?;
                parse_flat(inner.as_bytes())
                    .map_err(|e| OfficialAccountError::Malformed(e.to_string()))?
            }
            None => outer,
        };
        let from = msg.get("FromUserName").cloned().unwrap_or_default();
        let to = msg.get("ToUserName").cloned().unwrap_or_default();
        if from.is_empty() {
            return Err(OfficialAccountError::Malformed("no FromUserName".into()));
        }
        // Keyed by the receiving account (ToUserName) too: MsgIds are unique per account
        // only, and several accounts may share one Redis.
        let dedup_key = match msg.get("MsgId") {
            Some(id) => format!("mp:msg:{to}:{id}"),
            None => format!(
                "mp:event:{to}:{from}:{}",
                msg.get("CreateTime").map(String::as_str).unwrap_or("")
            ),
        };
        // The first push does the work; a retry gets the reply it made (or `success`
        // while it is still being made), so `bind` never runs twice.
        let plain_reply = if self.cache.set_nx_ex(&dedup_key, "", DEDUP_TTL).await? {
            let content = self.answer(&from, &msg).await?;
            let reply = text_reply(&from, &to, &content);
            self.cache.set_ex(&dedup_key, &reply, DEDUP_TTL).await?;
            reply
        } else {
            match self.cache.get(&dedup_key).await? {
                Some(r) if !r.is_empty() => r,
                _ => return Ok("success".into()),
            }
        };
        Ok(match &crypto {
            Some(c) => c.encrypt_reply(&plain_reply, &q.timestamp, &q.nonce),
            None => plain_reply,
        })
    }

    async fn answer(
        &self,
        from: &str,
        msg: &BTreeMap<String, String>,
    ) -> Result<String, OfficialAccountError> {
        match msg.get("MsgType").map(String::as_str) {
            Some("event") => {
                return Ok(match msg.get("Event").map(String::as_str) {
                    Some("subscribe") => format!("欢迎 Welcome!\n{HELP}"),
                    _ => "success".into(),
                });
            }
            Some("text") => {}
            _ => return Ok(HELP.into()),
        }
        let content = msg.get("Content").map(|c| c.trim()).unwrap_or("");
        let (cmd, arg) = content
            .split_once(char::is_whitespace)
            .unwrap_or((content, ""));
        let arg = arg.trim().to_string();
        let from = from.to_string();
        match cmd.to_ascii_lowercase().as_str() {
            "bind" => {
                self.db
                    .write_tx(move |c| -> Result<String, OfficialAccountError> {
                        let now = time::now();
                        match users::consume_bind_code(c, &arg, now)? {
                            Some(uid) => {
                                users::bind_mp_openid(c, uid, &from, now)?;
                                Ok("绑定成功 Linked: order updates will come here.".into())
                            }
                            None => Ok("绑定码无效或已过期 That code is invalid or expired. Get a new one in the mini-program.".into()),
                        }
                    })
                    .await
            }
            "orders" | "status" => {
                let want = (cmd.eq_ignore_ascii_case("status")).then_some(arg);
                self.db
                    .read(move |c| -> Result<String, OfficialAccountError> {
                        let Some(u) = users::find_by_mp_openid(c, &from)? else {
                            return Ok("未绑定 Not linked yet: send `bind <code>` with the code from the mini-program.".into());
                        };
                        let uid = u.id;
                        if let Some(no) = want {
                            return Ok(match oq::find_by_out_trade_no(c, &no)? {
                                Some(o) if o.involves(uid) => {
                                    format!("{}: {} ({} → {})", o.out_trade_no, o.status, o.pickup, o.dropoff)
                                }
                                _ => format!("No order {no} of yours."),
                            });
                        }
                        let rows = oq::list(c, Scope::Customer(uid), None, None, 5)?;
                        if rows.is_empty() {
                            return Ok("No orders yet.".into());
                        }
                        Ok(rows
                            .iter()
                            .take(5)
                            .map(|o| format!("{} {} ¥{}.{:02}", o.out_trade_no, o.status, o.amount_fen / 100, o.amount_fen % 100))
                            .collect::<Vec<_>>()
                            .join("\n"))
                    })
                    .await
            }
            _ => Ok(HELP.into()),
        }
    }
}
