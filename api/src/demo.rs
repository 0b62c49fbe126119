//! `demo`: the whole service on one machine with nothing installed. SQLite under
//! `data/`, the in-process cache, local storage, and the WeChat simulator from
//! `test_demo` standing in for WeChat's servers. Prints a walkthrough that works as printed.

use std::path::{Path, PathBuf};

use secrecy::SecretString;
use test_demo::sim::{self, SimConfig};

use campus_impl::Settings;
use campus_impl::crypto::random_alnum;

use crate::Application;

const DATA_DIR: &str = "data";
/// `ADMIN_OPENIDS` of the demo unless set.
const DEMO_ADMIN: &str = "demo-admin";
/// `DRAW_LOCK_SECS` of the demo unless set.
const DEMO_DRAW_LOCK_SECS: i64 = 5;
/// The order-status template the simulated official account has added.
const DEMO_MP_TEMPLATE: &str = "demo-mp-order-status";

/// Demo secrets persist in `data/` so that encrypted fields stay readable across runs.
fn demo_secret(dir: &Path, name: &str, make: impl FnOnce() -> String) -> anyhow::Result<String> {
    let path = dir.join(name);
    if let Ok(s) = std::fs::read_to_string(&path)
        && !s.trim().is_empty()
    {
        return Ok(s.trim().to_string());
    }
    let v = make();
    std::fs::write(&path, &v)?;
    Ok(v)
}

/// Points `settings` at a running simulator: its URLs, CA, credentials and merchant
/// certificate (written to `files`). The demo and the black-box tests both run on it.
pub fn use_simulator(
    settings: &mut Settings,
    sim: &sim::SimHandle,
    files: &Path,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(files)?;
    sim.write_files(files)?;
    point_at_simulator(settings, &sim.base_url(), sim.config(), files);
    // The mini-program's console setting: content check verdicts come back here.
    sim.set_mini_push_url(&mini_push_url(settings));
    Ok(())
}

/// Where the simulator pushes content check verdicts: the mini-program console's setting.
fn mini_push_url(settings: &Settings) -> String {
    format!(
        "{}/wechat/mini",
        settings.public_base_url.trim_end_matches('/')
    )
}

/// The settings that point at a simulator answering at `base_url` with `cfg`'s
/// credentials, whose CA and merchant certificate are in `files`.
fn point_at_simulator(settings: &mut Settings, base_url: &str, cfg: &SimConfig, files: &Path) {
    settings.wechat_api_base = base_url.to_string();
    settings.wechat_pay_api_base = base_url.to_string();
    settings.wechat_ca_cert = Some(files.join("ca.pem"));
    settings.wechat_appid = Some(cfg.appid.clone());
    settings.wechat_secret = Some(SecretString::from(cfg.secret.clone()));
    settings.wechat_mch_id = Some(cfg.mch_id.clone());
    settings.wechat_pay_key = Some(SecretString::from(cfg.pay_key.clone()));
    settings.wechat_pay_client_cert = files.join("apiclient_cert.pem");
    settings.wechat_pay_client_key = files.join("apiclient_key.pem");
    settings.wechat_pay_p12 = None;
    settings.wechat_mp_appid = Some(cfg.mp_appid.clone());
    settings.wechat_mp_token = Some(SecretString::from(cfg.mp_token.clone()));
    settings.wechat_mp_aes_key = Some(SecretString::from(cfg.mp_aes_key.clone()));
    settings.wechat_mp_secret = Some(SecretString::from(cfg.mp_secret.clone()));
    settings.wechat_mini_token = Some(SecretString::from(cfg.mini_token.clone()));
    // The simulator pushes in both modes.
    settings.wechat_mp_mode = Some(campus_impl::MpMode::Compatible.to_string());
    settings.public_base_url_check = campus_impl::Switch::Off.to_string();
}

pub async fn run(mut settings: Settings) -> anyhow::Result<()> {
    let data = PathBuf::from(DATA_DIR);
    std::fs::create_dir_all(&data)?;
    // DEMO_SIM_URL: a simulator already running in its own process (`wechat-sim`, started
    // with the demo's credentials and `--out-dir DEMO_SIM_DIR`), so that the server's own
    // memory and CPU can be measured apart from WeChat's stand-in. Else one in this process.
    let sim = match std::env::var("DEMO_SIM_URL") {
        Ok(url) => {
            let files = std::env::var_os("DEMO_SIM_DIR")
                .map(PathBuf::from)
                .ok_or_else(|| {
                    anyhow::anyhow!("DEMO_SIM_URL needs DEMO_SIM_DIR: the simulator's --out-dir")
                })?;
            point_at_simulator(&mut settings, &url, &SimConfig::demo(), &files);
            Simulator::Outside(url)
        }
        Err(_) => {
            let mut sim_cfg = SimConfig::demo();
            if let Ok(b) = std::env::var("SIM_BIND") {
                sim_cfg.bind = b.parse()?;
            }
            let sim = sim::start(sim_cfg).await?;
            use_simulator(&mut settings, &sim, &data.join("sim"))?;
            Simulator::Inside(sim)
        }
    };
    if settings.jwt_secret.is_none() {
        settings.jwt_secret = Some(SecretString::from(demo_secret(
            &data,
            "demo-jwt-secret",
            || random_alnum(48),
        )?));
    }
    if settings.field_encryption_key.is_none() {
        settings.field_encryption_key = Some(SecretString::from(demo_secret(
            &data,
            "demo-field-key",
            hex_key,
        )?));
    }
    // The walkthrough's draw is made a minute after it is created; the default lock would
    // make that two.
    if std::env::var_os("DRAW_LOCK_SECS").is_none() {
        settings.draw_lock_secs = DEMO_DRAW_LOCK_SECS;
    }
    // The walkthrough signs in to the console as this admin.
    if settings.admin_openid_list().is_empty() {
        settings.admin_openids = DEMO_ADMIN.into();
    }
    // Order updates go as template messages to followers who bound the official account.
    if settings.wechat_mp_template_order.is_none() {
        settings.wechat_mp_template_order = Some(DEMO_MP_TEMPLATE.into());
    }
    if let (Some(t), Simulator::Inside(sim)) = (&settings.wechat_mp_template_order, &sim) {
        sim.mp_add_template(t);
    }
    let app = Application::build(settings).await?;
    let ctx = app.context().clone();
    let base = format!("http://127.0.0.1:{}", app.port());
    println!("{}", walkthrough(&base, &sim.base_url()));
    let jobs = ctx.start_jobs();
    let r = app.run_until_stopped().await;
    jobs.abort();
    if let Simulator::Inside(sim) = sim {
        sim.stop();
    }
    Ok(r?)
}

/// The demo's WeChat simulator: started in this process, or one running in its own.
enum Simulator {
    Inside(sim::SimHandle),
    /// Its base URL. Its order template and push URL are its own flags
    /// (`wechat-sim --mp-template … --mini-push-url …`).
    Outside(String),
}

impl Simulator {
    fn base_url(&self) -> String {
        match self {
            Simulator::Inside(sim) => sim.base_url(),
            Simulator::Outside(url) => url.clone(),
        }
    }
}

fn hex_key() -> String {
    campus_impl::crypto::random_hex_key()
}

/// Commands that work as printed in bash (no jq needed).
fn walkthrough(base: &str, sim: &str) -> String {
    format!(
        r#"
Campus Errand demo is up: API {base}, WeChat simulator {sim}
Data in ./data (SQLite), logs in ./log. Try, in another shell:

# 1. The mini-program calls wx.login; the simulator hands out the code WeChat would.
CODE=$(curl -sk -X POST {sim}/sim/code -H 'Content-Type: application/json' -d '{{"openid":"demo-student"}}' | sed -E 's/.*"code":"([^"]+)".*/\1/')

# 2. Log in with it (jscode2session runs against the simulator).
TOKEN=$(curl -s -X POST {base}/api/v1/auth/login -H 'Content-Type: application/json' -d "{{\"code\":\"$CODE\"}}" | sed -E 's/.*"token":"([^"]+)".*/\1/')

# 3. Who am I? Then set a phone and dorm (stored encrypted).
curl -s {base}/api/v1/me -H "Authorization: Bearer $TOKEN"; echo
curl -s -X PATCH {base}/api/v1/me -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' -d '{{"nickname":"Xiao Ming","phone":"13800138000","dorm":"Building 5, Room 301"}}'; echo
#    Or with one tap on the phone-number button: its code, redeemed with getuserphonenumber.
PHONE_CODE=$(curl -sk -X POST {sim}/sim/phone-code -H 'Content-Type: application/json' -d '{{"phone":"13900139000"}}' | sed -E 's/.*"code":"([^"]+)".*/\1/')
curl -s -X POST {base}/api/v1/me/phone -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' -d "{{\"code\":\"$PHONE_CODE\"}}"; echo     # {{"phone":"139****9000"}}
#    An avatar (a 1x1 PNG whose text chunk says where it was taken): stored without that
#    text, sent to WeChat's content check, and shown once the verdict `pass` came back.
echo iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAAG3RFWHRDb21tZW50AHRha2VuIGF0IEJ1aWxkaW5nIDXnIMb8AAAADElEQVR4nGP438EAAAQRAYhxoDirAAAAAElFTkSuQmCC | base64 -d > avatar.png
curl -s -X PUT {base}/api/v1/me/avatar -H "Authorization: Bearer $TOKEN" -H 'Content-Type: image/png' --data-binary @avatar.png; echo     # "check":"pending"
sleep 1; curl -s {base}/api/v1/me -H "Authorization: Bearer $TOKEN"; echo     # "avatar_url":"…/images/<sha256>.png"

# 4. Post an errand and pay: the server calls unifiedorder, the simulator plays the student
#    confirming wx.requestPayment and then sends WeChat's signed pay notify back.
ORDER=$(curl -s -X POST {base}/api/v1/orders -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' -d '{{"kind":"express","pickup":"Express station, shelf B","dropoff":"Building 5, Room 301","note":"small box","fee_fen":300,"goods_fen":0}}' | sed -E 's/^\{{"id":([0-9]+).*/\1/')
#    /sim/pay takes exactly what the server returned for wx.requestPayment (paySign checked).
PAY=$(curl -s -X POST {base}/api/v1/orders/$ORDER/pay -H "Authorization: Bearer $TOKEN")
curl -sk -X POST {sim}/sim/pay -H 'Content-Type: application/json' -d "$PAY"; echo
sleep 1; curl -s {base}/api/v1/orders/$ORDER -H "Authorization: Bearer $TOKEN"; echo     # "status":"paid"

# 5. Changed your mind: cancel. A full refund goes out over mutual TLS with the merchant
#    certificate; WeChat's encrypted refund notify settles it a few seconds later.
curl -s -X POST {base}/api/v1/orders/$ORDER/cancel -H "Authorization: Bearer $TOKEN"; echo   # "status":"refunding"
sleep 5; curl -s {base}/api/v1/orders/$ORDER -H "Authorization: Bearer $TOKEN"; echo     # "status":"refunded"

# 6. A mini-program code for a dorm poster. The first request calls getwxacodeunlimit and
#    stores the image (X-Cache: MISS; HIT on later demo runs, images/ keeps it); the second
#    is served from the cache without calling WeChat (X-Cache: HIT). Then fetch the image.
curl -si "{base}/api/v1/qrcode?scene=dorm%3D5&page=pages/index/index" -H "Authorization: Bearer $TOKEN" | grep -iE '^x-cache|url'
curl -si "{base}/api/v1/qrcode?scene=dorm%3D5&page=pages/index/index" -H "Authorization: Bearer $TOKEN" | grep -iE '^x-cache|url'
QR=$(curl -s "{base}/api/v1/qrcode?scene=dorm%3D5&page=pages/index/index" -H "Authorization: Bearer $TOKEN" | sed -E 's/.*"url":"([^"]+)".*/\1/')
curl -s -o dorm5.png -w '%{{http_code}} %{{content_type}} %{{size_download}} bytes -> dorm5.png\n' "$QR"
curl -s {base}/metrics | grep 'wechat_calls_total.*getwxacodeunlimit'     # one call for three requests

# 7. The operators' console: open {base}/admin/ in a browser. It shows a mini-program code
#    for a one-time sign-in session (scene cs=<id>; the id is printed under the code). An
#    admin scanning it in the mini-program approves it; here, with curl, as the demo's admin
#    (ADMIN_OPENIDS=demo-admin unless set). Use the page's id, or open a session here:
ACODE=$(curl -sk -X POST {sim}/sim/code -H 'Content-Type: application/json' -d '{{"openid":"demo-admin"}}' | sed -E 's/.*"code":"([^"]+)".*/\1/')
ADMIN=$(curl -s -X POST {base}/api/v1/auth/login -H 'Content-Type: application/json' -d "{{\"code\":\"$ACODE\"}}" | sed -E 's/.*"token":"([^"]+)".*/\1/')
SESSION=$(curl -s -X POST {base}/api/v1/console/sessions | sed -E 's/.*"id":"([^"]+)".*/\1/')   # or: SESSION=<the id under the page's code>
curl -s -X POST {base}/api/v1/console/sessions/$SESSION/approve -H "Authorization: Bearer $ADMIN"; echo   # "approved"
curl -s {base}/api/v1/console/sessions/$SESSION; echo     # "approved" with the token: the page is signed in
curl -s {base}/api/v1/console/sessions/$SESSION; echo     # "approved", "token":null: handed over once
curl -s "{base}/api/v1/admin/stats" -H "Authorization: Bearer $ADMIN"; echo     # the last 7 Beijing days

# 8. A coupon: the admin issues 2 yuan off, the student claims it and pays an errand with it.
#    The server computes the discount; the coupon is locked while the order is unpaid and
#    used in the transaction that marks it paid.
CP=$(curl -s -X POST {base}/api/v1/admin/coupons -H "Authorization: Bearer $ADMIN" -H 'Content-Type: application/json' -d '{{"title":"First errand, 2 yuan off","discount_fen":200,"min_amount_fen":0,"stock":100,"per_user_limit":1,"valid_days":7}}' | sed -E 's/^\{{"id":([0-9]+).*/\1/')
MYCP=$(curl -s -X POST {base}/api/v1/coupons/$CP/claim -H "Authorization: Bearer $TOKEN" | sed -E 's/^\{{"id":([0-9]+).*/\1/')
curl -s -X POST {base}/api/v1/coupons/$CP/claim -H "Authorization: Bearer $TOKEN"; echo     # 409 already_claimed: one per student
ORDER2=$(curl -s -X POST {base}/api/v1/orders -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' -d "{{\"kind\":\"takeout\",\"pickup\":\"North gate\",\"dropoff\":\"Building 5, Room 301\",\"note\":\"noodles\",\"fee_fen\":300,\"goods_fen\":0,\"coupon_id\":$MYCP}}" | sed -E 's/^\{{"id":([0-9]+).*/\1/')
PAY2=$(curl -s -X POST {base}/api/v1/orders/$ORDER2/pay -H "Authorization: Bearer $TOKEN")
curl -sk -X POST {sim}/sim/pay -H 'Content-Type: application/json' -d "$PAY2"; echo
sleep 1; curl -s {base}/api/v1/orders/$ORDER2 -H "Authorization: Bearer $TOKEN"; echo    # "paid", "discount_fen":200, "amount_fen":100
curl -s "{base}/api/v1/me/coupons?status=used" -H "Authorization: Bearer $TOKEN"; echo    # the coupon, "status":"used"

# 9. A lucky draw: the student creates one for a minute from now (joins close DRAW_LOCK_SECS
#    before; the demo's is 5 s), both join, and the draw job draws it once at draw_at.
DRAW_AT=$(date -u -d "@$(( $(date +%s) + 70 ))" +%Y-%m-%dT%H:%M:%SZ)
DRAW=$(curl -s -X POST {base}/api/v1/draws -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' -d "{{\"title\":\"Exam week milk tea\",\"draw_at\":\"$DRAW_AT\",\"prizes\":[{{\"name\":\"Milk tea\",\"count\":1}}]}}" | sed -E 's/^\{{"id":([0-9]+).*/\1/')
curl -s -X POST {base}/api/v1/draws/$DRAW/join -H "Authorization: Bearer $TOKEN"; echo
curl -s -X POST {base}/api/v1/draws/$DRAW/join -H "Authorization: Bearer $ADMIN"; echo
curl -s {base}/api/v1/draws/$DRAW/qrcode -H "Authorization: Bearer $TOKEN"; echo     # the share code (scene d=<id>)
sleep 75; curl -s {base}/api/v1/draws/$DRAW -H "Authorization: Bearer $TOKEN"; echo   # "status":"drawn", the winner, the seed
#    Anyone can re-run it from the seed and get the same winner (from this directory):
cargo run --release -- draw replay $DRAW

# 10. Team expenses, typed to the official account. The student links the account with a
#     bind code from the mini-program; the admin puts them in a group (as its leader; the
#     group is kept in ./data, so a second run answers 409 group_name_taken and goes on).
BIND=$(curl -s -X POST {base}/api/v1/me/bind-code -H "Authorization: Bearer $TOKEN" | sed -E 's/.*"code":"([^"]+)".*/\1/')
curl -sk -X POST {sim}/sim/mp/text -H 'Content-Type: application/json' -d "{{\"endpoint\":\"{base}/wechat/mp\",\"from\":\"demo-oa-student\",\"content\":\"bind $BIND\"}}" | sed -E 's/.*"content":"([^"]*)".*/\1/'   # Linked
ME=$(curl -s {base}/api/v1/me -H "Authorization: Bearer $TOKEN" | sed -E 's/^\{{"id":([0-9]+).*/\1/')
curl -s -X POST {base}/api/v1/admin/groups -H "Authorization: Bearer $ADMIN" -H 'Content-Type: application/json' -d '{{"name":"后勤组 Logistics"}}'; echo
GROUP=$(curl -s {base}/api/v1/admin/groups -H "Authorization: Bearer $ADMIN" | sed -E 's/^\[\{{"id":([0-9]+).*/\1/')
curl -s -X POST {base}/api/v1/admin/groups/$GROUP/members -H "Authorization: Bearer $ADMIN" -H 'Content-Type: application/json' -d "{{\"user_id\":$ME,\"leader\":true}}"; echo
#     Typed to the official account (the reply is what the student sees there):
say() {{ curl -sk -X POST {sim}/sim/mp/text -H 'Content-Type: application/json' -d "{{\"endpoint\":\"{base}/wechat/mp\",\"from\":\"demo-oa-student\",\"content\":\"$1\"}}" | sed -E 's/.*"content":"([^"]*)".*/\1/; s/\\n/\n/g'; echo; }}
say 'expense 35.50 tea and cakes'      # Recorded: ¥35.50
say '报销 12 奶茶'                     # Recorded: ¥12.00
say 'expense 35.555 tea'               # refused: at most two decimals, with the right form
say 'group'                            # the group's unreimbursed total, per member
#     The center's view, the reimbursement of the group's quarter in one step, and the CSV
#     (UTF-8 with BOM: opens in a spreadsheet with the Chinese intact).
SUMMARY=$(curl -s "{base}/api/v1/expenses/summary?scope=center" -H "Authorization: Bearer $ADMIN"); echo "$SUMMARY"
Q=$(echo "$SUMMARY" | sed -E 's/.*"quarter":"([^"]+)".*/\1/')
curl -s -X POST {base}/api/v1/admin/reimbursements -H "Authorization: Bearer $ADMIN" -H 'Content-Type: application/json' -d "{{\"group_id\":$GROUP,\"quarter\":\"$Q\"}}"; echo
curl -s "{base}/api/v1/admin/reports/expenses.csv?quarter=$Q" -H "Authorization: Bearer $ADMIN" -o expenses.csv; head -3 expenses.csv
#     The account's menu (`cargo run --release -- mp-menu` creates it from conf/mp_menu.json);
#     a tap on "我的订单" sends the command `orders`:
curl -sk -X POST {sim}/sim/mp/click -H 'Content-Type: application/json' -d "{{\"endpoint\":\"{base}/wechat/mp\",\"from\":\"demo-oa-student\",\"key\":\"orders\"}}" | sed -E 's/.*"content":"([^"]*)".*/\1/; s/\\n/\n/g'; echo
#     From now on this student's order updates also come to the official account as
#     template messages (the outbox, its retries and outcomes):
curl -s "{base}/api/v1/admin/mp-messages" -H "Authorization: Bearer $ADMIN"; echo

# Health, metrics and the API document:
curl -s {base}/healthz; echo
curl -s {base}/metrics | head -5
curl -s {base}/api/v1/openapi.json | head -c 200; echo
"#
    )
}
