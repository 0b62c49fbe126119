"""Writes the seed corpus (run once; the files are kept in the repo): WeChat's documented
signing example, a signed pay notify, an encrypted refund notify and an encrypted
official-account push for the keys the targets use."""
import base64, hashlib, hmac, os, struct
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

KEY = "192006250b4c09247ec02edce69f6a2d"
APPID, MCH = "wxd930ea5d5a258f4f", "10000100"

def xml(d):
    return "<xml>" + "".join(f"<{k}><![CDATA[{v}]]></{k}>" for k, v in d.items()) + "</xml>"

def signed(d, hmac_sha256=False):
    s = "&".join(f"{k}={d[k]}" for k in sorted(d) if d[k] != "") + "&key=" + KEY
    if hmac_sha256:
        sig = hmac.new(KEY.encode(), s.encode(), hashlib.sha256).hexdigest().upper()
    else:
        sig = hashlib.md5(s.encode()).hexdigest().upper()
    return dict(d, sign=sig)

def pkcs7(b, n):
    p = n - len(b) % n
    return b + bytes([p]) * p

def put(target, name, data):
    with open(f"corpus/{target}/{name}", "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())

example = {"appid": APPID, "mch_id": MCH, "device_info": "1000", "body": "test", "nonce_str": "ibuaiVcKdpRxkhJA"}
put("pay_xml", "doc-example", xml(signed(example)))
notify = {"appid": APPID, "mch_id": MCH, "return_code": "SUCCESS", "result_code": "SUCCESS",
          "out_trade_no": "CE20261130000001", "transaction_id": "4200000001202611300000000001",
          "total_fee": "300", "cash_fee": "300", "openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o",
          "time_end": "20261130120000", "nonce_str": "5K8264ILTKCH16CQ", "sign_type": "MD5"}
put("pay_notify", "md5", xml(signed(notify)))
put("pay_notify", "hmac", xml(signed(dict(notify, sign_type="HMAC-SHA256"), True)))
put("pay_xml", "notify", xml(signed(notify)))

inner = ("<root><out_refund_no><![CDATA[CE20261130000001R1]]></out_refund_no>"
         "<out_trade_no><![CDATA[CE20261130000001]]></out_trade_no><refund_account><![CDATA[REFUND_SOURCE_RECHARGE_FUNDS]]></refund_account>"
         "<refund_fee><![CDATA[300]]></refund_fee><refund_id><![CDATA[50000000382019052709732678859]]></refund_id>"
         "<refund_recv_accout><![CDATA[支付用户零钱]]></refund_recv_accout><refund_request_source><![CDATA[API]]></refund_request_source>"
         "<refund_status><![CDATA[SUCCESS]]></refund_status><settlement_refund_fee><![CDATA[300]]></settlement_refund_fee>"
         "<settlement_total_fee><![CDATA[300]]></settlement_total_fee><success_time><![CDATA[2026-11-30 12:00:00]]></success_time>"
         "<total_fee><![CDATA[300]]></total_fee><transaction_id><![CDATA[4200000001202611300000000001]]></transaction_id></root>").encode()
aes_key = hashlib.md5(KEY.encode()).hexdigest().encode()
enc = Cipher(algorithms.AES(aes_key), modes.ECB()).encryptor()
req_info = base64.b64encode(enc.update(pkcs7(inner, 16)) + enc.finalize()).decode()
put("refund_notify", "success", xml({"return_code": "SUCCESS", "appid": APPID, "mch_id": MCH,
                                     "nonce_str": "TeqClE3i0mvn3DrK", "req_info": req_info}))
put("refund_notify", "req_info", req_info)

mp_key = base64.b64decode("abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG=")
msg = ("<xml><ToUserName><![CDATA[gh_123]]></ToUserName><FromUserName><![CDATA[oUser]]></FromUserName>"
       "<CreateTime>1409304348</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[help]]></Content>"
       "<MsgId>1234567890123456</MsgId></xml>").encode()
plain = os.urandom(16) + struct.pack(">I", len(msg)) + msg + b"wx5823bf96d3bd56c7"
enc = Cipher(algorithms.AES(mp_key), modes.CBC(mp_key[:16])).encryptor()
put("mp_decrypt", "text-help", base64.b64encode(enc.update(pkcs7(plain, 32)) + enc.finalize()))
put("mp_decrypt", "plain-text", msg)
