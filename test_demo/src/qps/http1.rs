//! A minimal, allocation-free-per-request HTTP/1.1 client exchange: the request
//! is serialised once, responses are parsed with `httparse` (hyper's parser)
//! and their bodies skipped (Content-Length, chunked, or until close).

use std::io;

use anyhow::bail;
use tokio::io::{AsyncRead, AsyncReadExt};

/// Initial read buffer size per connection.
const BUF_INIT: usize = 16 * 1024;
/// Largest response head accepted.
const MAX_HEAD: usize = 1024 * 1024;
/// How much of an unexpected response's body is kept as a sample.
pub const SAMPLE_MAX: usize = 300;

/// What a request is made of; serialised once by [`build_request`].
#[derive(Debug, Clone, Default)]
pub struct RequestSpec {
    pub method: String,
    pub host_header: String,
    pub path_and_query: String,
    /// Extra headers, already validated.
    pub headers: Vec<(String, String)>,
    pub bearer: Option<String>,
    pub body: Option<Vec<u8>>,
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn is_field_value(s: &str) -> bool {
    s.bytes().all(|b| b == b'\t' || (b >= 0x20 && b != 0x7f))
}

/// Parses a `-H 'Name: value'` argument.
pub fn parse_header(raw: &str) -> anyhow::Result<(String, String)> {
    let Some((name, value)) = raw.split_once(':') else {
        bail!("header `{raw}` must look like `Name: value`");
    };
    let name = name.trim();
    let value = value.trim();
    if !is_token(name) {
        bail!("header name `{name}` is not a valid HTTP token");
    }
    if !is_field_value(value) {
        bail!("header `{name}` has control characters in its value");
    }
    if name.eq_ignore_ascii_case("content-length") || name.eq_ignore_ascii_case("transfer-encoding")
    {
        bail!("header `{name}` is set by qps itself");
    }
    Ok((name.to_string(), value.to_string()))
}

/// Serialises the request once; every connection sends these exact bytes.
pub fn build_request(spec: &RequestSpec) -> anyhow::Result<Vec<u8>> {
    if !is_token(&spec.method) {
        bail!("method `{}` is not a valid HTTP token", spec.method);
    }
    if !spec.path_and_query.starts_with('/')
        || !is_field_value(&spec.path_and_query)
        || spec.path_and_query.contains(' ')
    {
        bail!("invalid request path `{}`", spec.path_and_query);
    }
    let has = |n: &str| spec.headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(n));
    if spec.bearer.is_some() && has("authorization") {
        bail!("--token/--login-code and an -H Authorization header cannot both be given");
    }
    let mut out = Vec::with_capacity(256 + spec.body.as_ref().map_or(0, Vec::len));
    let mut line = |k: &str, v: &str| {
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(v.as_bytes());
        out.extend_from_slice(b"\r\n");
    };
    let mut head = Vec::new();
    head.extend_from_slice(spec.method.as_bytes());
    head.push(b' ');
    head.extend_from_slice(spec.path_and_query.as_bytes());
    head.extend_from_slice(b" HTTP/1.1\r\n");
    if !has("host") {
        line("Host", &spec.host_header);
    }
    if !has("user-agent") {
        line("User-Agent", concat!("qps/", env!("CARGO_PKG_VERSION")));
    }
    if !has("accept") {
        line("Accept", "*/*");
    }
    if let Some(token) = &spec.bearer {
        if !is_field_value(token) || token.is_empty() {
            bail!("the token has control characters or is empty");
        }
        line("Authorization", &format!("Bearer {token}"));
    }
    if let Some(body) = &spec.body {
        if !has("content-type") {
            line("Content-Type", "application/json");
        }
        line("Content-Length", &body.len().to_string());
    } else if !matches!(
        spec.method.as_str(),
        "GET" | "HEAD" | "DELETE" | "OPTIONS" | "TRACE"
    ) {
        line("Content-Length", "0");
    }
    for (k, v) in &spec.headers {
        line(k, v);
    }
    out.extend_from_slice(b"\r\n");
    if let Some(body) = &spec.body {
        out.extend_from_slice(body);
    }
    head.extend_from_slice(&out);
    Ok(head)
}

/// Why reading a response failed.
#[derive(Debug)]
pub enum ReadError {
    /// The peer closed the connection before the response was complete.
    Closed {
        mid_response: bool,
    },
    Io(io::Error),
    Protocol(String),
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Closed {
                mid_response: false,
            } => f.write_str("connection closed by the server before a response"),
            ReadError::Closed { mid_response: true } => {
                f.write_str("connection closed by the server in the middle of a response")
            }
            ReadError::Io(e) => write!(f, "{e}"),
            ReadError::Protocol(m) => write!(f, "bad HTTP response: {m}"),
        }
    }
}

/// What was learnt from one response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseMeta {
    pub status: u16,
    /// False when the server asked to close (or the body ran until close).
    pub keep_alive: bool,
    /// Bytes read for this response (head and body).
    pub bytes: u64,
}

/// Incremental chunked-body skipper.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chunked {
    Size { value: u64, digits: u32, ext: bool },
    Data(u64),
    DataEnd { cr: bool },
    Trailer { len: u32 },
    Done,
}

impl Chunked {
    pub fn new() -> Self {
        Chunked::Size {
            value: 0,
            digits: 0,
            ext: false,
        }
    }

    /// Consumes from `data`; returns how many bytes were used. Data bytes are
    /// offered to `sample`. Stops right after the final CRLF ([`Chunked::Done`]).
    pub fn advance(
        &mut self,
        data: &[u8],
        mut sample: Option<&mut Vec<u8>>,
    ) -> Result<usize, ReadError> {
        let mut i = 0;
        while i < data.len() {
            match self {
                Chunked::Done => return Ok(i),
                Chunked::Data(rem) => {
                    let take = (*rem).min((data.len() - i) as u64) as usize;
                    if let Some(s) = sample.as_deref_mut() {
                        keep_sample(s, &data[i..i + take]);
                    }
                    i += take;
                    *rem -= take as u64;
                    if *rem == 0 {
                        *self = Chunked::DataEnd { cr: false };
                    }
                }
                Chunked::Size { value, digits, ext } => {
                    let b = data[i];
                    i += 1;
                    match b {
                        b'\n' => {
                            if *digits == 0 {
                                return Err(ReadError::Protocol("empty chunk size".into()));
                            }
                            *self = if *value == 0 {
                                Chunked::Trailer { len: 0 }
                            } else {
                                Chunked::Data(*value)
                            };
                        }
                        b'\r' => {}
                        _ if *ext => {}
                        b';' | b' ' | b'\t' => *ext = true,
                        _ => {
                            let d = (b as char)
                                .to_digit(16)
                                .ok_or_else(|| ReadError::Protocol("bad chunk size".into()))?;
                            *digits += 1;
                            if *digits > 15 {
                                return Err(ReadError::Protocol("chunk size too large".into()));
                            }
                            *value = *value * 16 + u64::from(d);
                        }
                    }
                }
                Chunked::DataEnd { cr } => {
                    let b = data[i];
                    i += 1;
                    match (b, *cr) {
                        (b'\r', false) => *cr = true,
                        (b'\n', _) => *self = Chunked::new(),
                        _ => return Err(ReadError::Protocol("missing CRLF after chunk".into())),
                    }
                }
                Chunked::Trailer { len } => {
                    let b = data[i];
                    i += 1;
                    match b {
                        b'\n' if *len == 0 => *self = Chunked::Done,
                        b'\n' => *len = 0,
                        b'\r' => {}
                        _ => *len = len.saturating_add(1),
                    }
                }
            }
        }
        Ok(i)
    }
}

impl Default for Chunked {
    fn default() -> Self {
        Self::new()
    }
}

fn keep_sample(sample: &mut Vec<u8>, data: &[u8]) {
    let room = SAMPLE_MAX.saturating_sub(sample.len());
    sample.extend_from_slice(&data[..room.min(data.len())]);
}

enum Body {
    None,
    Length(u64),
    Chunked,
    UntilClose,
}

/// Per-connection response reader with a reusable buffer.
pub struct ResponseReader {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl Default for ResponseReader {
    fn default() -> Self {
        Self::new()
    }
}

impl ResponseReader {
    pub fn new() -> Self {
        ResponseReader {
            buf: vec![0; BUF_INIT],
            start: 0,
            end: 0,
        }
    }

    /// Forgets buffered bytes (after a reconnect).
    pub fn reset(&mut self) {
        self.start = 0;
        self.end = 0;
    }

    /// Reads more bytes into the buffer; Ok(0) at EOF.
    async fn fill<S: AsyncRead + Unpin>(&mut self, s: &mut S) -> Result<usize, ReadError> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        if self.end == self.buf.len() {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            } else if self.buf.len() < MAX_HEAD {
                self.buf.resize(self.buf.len() * 2, 0);
            } else {
                return Err(ReadError::Protocol(
                    "response head larger than 1 MiB".into(),
                ));
            }
        }
        let n = s
            .read(&mut self.buf[self.end..])
            .await
            .map_err(ReadError::Io)?;
        self.end += n;
        Ok(n)
    }

    /// Reads one complete response. `head_request`: the request was HEAD (no body).
    /// `sample`: when given and the status is not 2xx/3xx, up to [`SAMPLE_MAX`]
    /// body bytes are copied into it.
    pub async fn read_response<S: AsyncRead + Unpin>(
        &mut self,
        s: &mut S,
        head_request: bool,
        mut sample: Option<&mut Vec<u8>>,
    ) -> Result<ResponseMeta, ReadError> {
        let mut bytes = 0u64;
        let (status, keep_alive, body) = loop {
            let parsed = if self.start < self.end {
                let mut headers = [httparse::EMPTY_HEADER; 64];
                let mut resp = httparse::Response::new(&mut headers);
                match resp.parse(&self.buf[self.start..self.end]) {
                    Ok(httparse::Status::Complete(n)) => {
                        Some(head_info(&resp, head_request).map(|h| (n, h)))
                    }
                    Ok(httparse::Status::Partial) => None,
                    Err(e) => Some(Err(ReadError::Protocol(e.to_string()))),
                }
            } else {
                None
            };
            match parsed {
                Some(Ok((n, (status, keep_alive, body)))) => {
                    self.start += n;
                    bytes += n as u64;
                    if (100..200).contains(&status) {
                        if status == 101 {
                            return Err(ReadError::Protocol(
                                "101 Switching Protocols is not supported".into(),
                            ));
                        }
                        continue; // interim response: the real one follows
                    }
                    if (200..400).contains(&status) {
                        sample = None; // only unexpected statuses are sampled
                    }
                    break (status, keep_alive, body);
                }
                Some(Err(e)) => return Err(e),
                None => {
                    let nothing_yet = self.end == self.start && bytes == 0;
                    match self.fill(s).await {
                        Ok(0) => {
                            return Err(ReadError::Closed {
                                mid_response: !nothing_yet,
                            });
                        }
                        Ok(_) => {}
                        // A reset before any byte of the response: the server closed the connection.
                        Err(ReadError::Io(e))
                            if nothing_yet
                                && matches!(
                                    e.kind(),
                                    io::ErrorKind::ConnectionReset
                                        | io::ErrorKind::ConnectionAborted
                                        | io::ErrorKind::BrokenPipe
                                ) =>
                        {
                            return Err(ReadError::Closed {
                                mid_response: false,
                            });
                        }
                        Err(e) => return Err(e),
                    }
                }
            }
        };
        let keep_alive = match body {
            Body::None => keep_alive,
            Body::Length(mut rem) => {
                loop {
                    let take = (rem.min((self.end - self.start) as u64)) as usize;
                    if let Some(s) = sample.as_deref_mut() {
                        keep_sample(s, &self.buf[self.start..self.start + take]);
                    }
                    self.start += take;
                    rem -= take as u64;
                    bytes += take as u64;
                    if rem == 0 {
                        break;
                    }
                    if self.fill(s).await? == 0 {
                        return Err(ReadError::Closed { mid_response: true });
                    }
                }
                keep_alive
            }
            Body::Chunked => {
                let mut ch = Chunked::new();
                loop {
                    let used =
                        ch.advance(&self.buf[self.start..self.end], sample.as_deref_mut())?;
                    self.start += used;
                    bytes += used as u64;
                    if ch == Chunked::Done {
                        break;
                    }
                    if self.fill(s).await? == 0 {
                        return Err(ReadError::Closed { mid_response: true });
                    }
                }
                keep_alive
            }
            Body::UntilClose => {
                loop {
                    let avail = &self.buf[self.start..self.end];
                    if let Some(s) = sample.as_deref_mut() {
                        keep_sample(s, avail);
                    }
                    bytes += avail.len() as u64;
                    self.start = self.end;
                    if self.fill(s).await? == 0 {
                        break;
                    }
                }
                false
            }
        };
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        Ok(ResponseMeta {
            status,
            keep_alive,
            bytes,
        })
    }
}

fn head_info(
    resp: &httparse::Response<'_, '_>,
    head_request: bool,
) -> Result<(u16, bool, Body), ReadError> {
    let status = resp
        .code
        .ok_or_else(|| ReadError::Protocol("no status".into()))?;
    let http11 = resp.version == Some(1);
    let mut close = false;
    let mut keep_alive_token = false;
    let mut chunked = false;
    let mut length: Option<u64> = None;
    for h in resp.headers.iter() {
        let name = h.name;
        if name.eq_ignore_ascii_case("content-length") {
            let v = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .ok_or_else(|| ReadError::Protocol("bad Content-Length".into()))?;
            if length.is_some_and(|l| l != v) {
                return Err(ReadError::Protocol(
                    "conflicting Content-Length headers".into(),
                ));
            }
            length = Some(v);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            let v = String::from_utf8_lossy(h.value);
            chunked = v
                .split(',')
                .next_back()
                .is_some_and(|c| c.trim().eq_ignore_ascii_case("chunked"));
        } else if name.eq_ignore_ascii_case("connection") {
            for tok in String::from_utf8_lossy(h.value).split(',') {
                let tok = tok.trim();
                if tok.eq_ignore_ascii_case("close") {
                    close = true;
                } else if tok.eq_ignore_ascii_case("keep-alive") {
                    keep_alive_token = true;
                }
            }
        }
    }
    let keep_alive = !close && (http11 || keep_alive_token);
    let body = if head_request || (100..200).contains(&status) || status == 204 || status == 304 {
        Body::None
    } else if chunked {
        Body::Chunked
    } else if let Some(l) = length {
        Body::Length(l)
    } else {
        Body::UntilClose
    };
    Ok((status, keep_alive, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> RequestSpec {
        RequestSpec {
            method: "GET".into(),
            host_header: "127.0.0.1:8080".into(),
            path_and_query: "/healthz".into(),
            ..Default::default()
        }
    }

    #[test]
    fn request_bytes() {
        let r = String::from_utf8(build_request(&spec()).expect("build")).expect("utf8");
        assert!(r.starts_with("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n"));
        assert!(r.ends_with("\r\n\r\n"));
        assert!(!r.contains("Content-Length"));

        let mut s = spec();
        s.method = "POST".into();
        s.body = Some(br#"{"code":"x"}"#.to_vec());
        s.bearer = Some("tok".into());
        s.headers = vec![("X-Test".into(), "1".into())];
        let r = String::from_utf8(build_request(&s).expect("build")).expect("utf8");
        assert!(r.contains("\r\nContent-Length: 12\r\n"));
        assert!(r.contains("\r\nContent-Type: application/json\r\n"));
        assert!(r.contains("\r\nAuthorization: Bearer tok\r\n"));
        assert!(r.contains("\r\nX-Test: 1\r\n"));
        assert!(r.ends_with("\r\n\r\n{\"code\":\"x\"}"));

        s.headers = vec![("authorization".into(), "Basic x".into())];
        assert!(build_request(&s).is_err());
        s.bearer = Some("a\r\nb".into());
        s.headers.clear();
        assert!(build_request(&s).is_err());
    }

    #[test]
    fn header_args() {
        assert_eq!(
            parse_header("X-A:  b c ").expect("ok"),
            ("X-A".into(), "b c".into())
        );
        assert!(parse_header("nocolon").is_err());
        assert!(parse_header("Bad Name: x").is_err());
        assert!(parse_header("Content-Length: 5").is_err());
        assert!(parse_header("X: a\nb").is_err());
    }

    #[test]
    fn chunked_in_pieces() {
        let body = b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nTrailer: x\r\n\r\nNEXT";
        for split in 0..=body.len() - 4 {
            let mut ch = Chunked::new();
            let mut sample = Vec::new();
            let a = ch.advance(&body[..split], Some(&mut sample)).expect("ok");
            assert_eq!(a, split);
            let b = ch.advance(&body[split..], Some(&mut sample)).expect("ok");
            assert_eq!(ch, Chunked::Done);
            assert_eq!(&body[split + b..], b"NEXT", "split {split}");
            assert_eq!(sample, b"hello world");
        }
        assert!(Chunked::new().advance(b"zz\r\n", None).is_err());
        assert!(Chunked::new().advance(b"\r\n", None).is_err());
    }

    async fn read_all(wire: &[u8], head: bool) -> Vec<Result<ResponseMeta, String>> {
        let mut r = ResponseReader::new();
        let mut s = wire;
        let mut out = Vec::new();
        loop {
            let res = r
                .read_response(&mut s, head, None)
                .await
                .map_err(|e| e.to_string());
            let stop = res.is_err() || res.as_ref().is_ok_and(|m| !m.keep_alive);
            out.push(res);
            if stop {
                return out;
            }
        }
    }

    #[tokio::test]
    async fn responses_back_to_back() {
        let wire = b"HTTP/1.1 100 Continue\r\n\r\n\
            HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok\
            HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n\
            HTTP/1.1 204 No Content\r\n\r\n\
            HTTP/1.0 200 OK\r\n\r\nuntil close";
        let got = read_all(wire, false).await;
        let statuses: Vec<_> = got
            .iter()
            .map(|r| r.as_ref().map(|m| (m.status, m.keep_alive)))
            .collect();
        assert_eq!(
            statuses,
            vec![
                Ok((200, true)),
                Ok((404, true)),
                Ok((204, true)),
                Ok((200, false))
            ]
        );
        let total: u64 = got
            .iter()
            .filter_map(|r| r.as_ref().ok())
            .map(|m| m.bytes)
            .sum();
        assert_eq!(total, wire.len() as u64);

        let got = read_all(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", false).await;
        assert!(got[0].as_ref().is_err_and(|e| e.contains("middle")));
        let got = read_all(b"", false).await;
        assert!(
            got[0]
                .as_ref()
                .is_err_and(|e| e.contains("before a response"))
        );
        let got = read_all(
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\nConnection: close\r\n\r\n",
            true,
        )
        .await;
        assert_eq!(
            got[0].as_ref().map(|m| (m.status, m.keep_alive)),
            Ok((200, false))
        );
        let got = read_all(b"garbage\r\n\r\n", false).await;
        assert!(got[0].is_err());
    }

    #[tokio::test]
    async fn big_head_and_sample() {
        let mut wire = b"HTTP/1.1 401 Unauthorized\r\n".to_vec();
        for i in 0..50 {
            wire.extend_from_slice(format!("X-Pad-{i}: {}\r\n", "p".repeat(500)).as_bytes());
        }
        let body = format!("{{\"error\":\"{}\"}}", "e".repeat(1000));
        wire.extend_from_slice(format!("Content-Length: {}\r\n\r\n{body}", body.len()).as_bytes());
        let mut r = ResponseReader::new();
        let mut sample = Vec::new();
        let mut s = &wire[..];
        let m = r
            .read_response(&mut s, false, Some(&mut sample))
            .await
            .expect("ok");
        assert_eq!(m.status, 401);
        assert_eq!(m.bytes, wire.len() as u64);
        assert_eq!(sample.len(), SAMPLE_MAX);
        assert!(sample.starts_with(b"{\"error\""));
    }
}
