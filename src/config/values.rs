//! The value types of options and the parsers that read them from text. The command line and
//! the `--config` file use the very same parsers, so a value means the same in both and a bad
//! one is reported the same way.

use std::{fmt, net::SocketAddr, str::FromStr, time::Duration};

use hickory_proto::rr::Name;
use reqwest::Url;

use super::parts::LogTarget;
use crate::cidr::Cidr;

/// A Consul ACL token. It prints as `<redacted>` everywhere, so no log line, error or `Debug`
/// dump can leak it.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Token(pub(super) String);

impl Token {
    /// The secret itself, for the one place that puts it in a request header.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// Consul's `recursor_strategy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum RecursorStrategy {
    /// Always in the order given; the next only when one fails.
    #[default]
    Sequential,
    /// Spread over all of them (hickory rotates them round-robin).
    Random,
}

/// How log lines are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// `--http-listen`: an address, or off.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HttpListen(pub Option<SocketAddr>);

pub(crate) fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    SocketAddr::from_str(text)
        .map_err(|_| format!("expected IP:PORT such as 127.0.0.1:8653, got '{text}'"))
}

/// Accepts what Consul's own `CONSUL_HTTP_ADDR` accepts: a URL, or `host:port` meaning HTTP.
pub(crate) fn parse_consul_addr(text: &str) -> Result<Url, String> {
    let with_scheme = if text.contains("://") {
        text.to_owned()
    } else {
        format!("http://{text}")
    };
    let url = Url::parse(&with_scheme).map_err(|e| format!("not a URL ({e})"))?;
    match url.scheme() {
        "http" | "https" if url.host().is_some() => Ok(url),
        _ => Err(format!("expected http://HOST:PORT, got '{text}'")),
    }
}

pub(crate) fn parse_http_listen(text: &str) -> Result<HttpListen, String> {
    match text {
        "off" | "" => Ok(HttpListen(None)),
        _ => SocketAddr::from_str(text)
            .map(|addr| HttpListen(Some(addr)))
            .map_err(|_| format!("expected IP:PORT such as 127.0.0.1:8654, or off, got '{text}'")),
    }
}

pub(crate) fn parse_log_format(text: &str) -> Result<LogFormat, String> {
    match text {
        "text" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        _ => Err(format!("expected text or json, got '{text}'")),
    }
}

pub(crate) fn parse_log_level(text: &str) -> Result<String, String> {
    tracing_subscriber::EnvFilter::builder()
        .parse(text)
        .map(|_| text.to_owned())
        .map_err(|e| format!("not a log level or filter ({e})"))
}

/// An upstream resolver as Consul's `recursors` takes it: an IP, with an optional port.
pub(crate) fn parse_recursor(text: &str) -> Result<SocketAddr, String> {
    if let Ok(ip) = text.parse::<std::net::IpAddr>() {
        return Ok(SocketAddr::new(ip, 53));
    }
    SocketAddr::from_str(text)
        .map_err(|_| format!("expected an IP or IP:PORT such as 127.0.0.1:53, got '{text}'"))
}

pub(crate) fn parse_recursor_strategy(text: &str) -> Result<RecursorStrategy, String> {
    match text {
        "sequential" => Ok(RecursorStrategy::Sequential),
        "random" => Ok(RecursorStrategy::Random),
        _ => Err(format!("expected sequential or random, got '{text}'")),
    }
}

/// Go's `strconv.ParseBool`, which Consul uses for its boolean variables.
pub(crate) fn parse_bool(text: &str) -> Result<bool, String> {
    match text {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(format!("expected true or false, got '{text}'")),
    }
}

pub(crate) fn parse_domain(text: &str) -> Result<Name, String> {
    let mut name = Name::from_ascii(text).map_err(|e| format!("not a DNS name ({e})"))?;
    if name.is_root() {
        return Err("the root cannot be the Consul domain".into());
    }
    name.set_fqdn(true);
    Ok(name.to_lowercase())
}

pub(crate) fn parse_datacenter(text: &str) -> Result<String, String> {
    let valid = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if valid {
        Ok(text.to_ascii_lowercase())
    } else {
        Err(format!("not a datacenter name: '{text}'"))
    }
}

pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|e| format!("expected a duration like 10s ({e})"))
}

/// `10s` (every service) or `NAME=10s`, `PREFIX*=10s`, `*=10s`.
pub(crate) fn parse_service_ttl(text: &str) -> Result<(Option<String>, Duration), String> {
    match text.split_once('=') {
        Some((name, ttl)) if !name.is_empty() => Ok((Some(name.to_owned()), parse_duration(ttl)?)),
        Some(_) => Err(format!("expected NAME=DURATION, got '{text}'")),
        None => Ok((None, parse_duration(text)?)),
    }
}

pub(crate) fn parse_count(text: &str) -> Result<usize, String> {
    text.parse::<usize>()
        .map_err(|_| format!("expected a whole number, got '{text}'"))
}

pub(crate) fn parse_seconds(text: &str) -> Result<u32, String> {
    text.parse::<u32>()
        .map_err(|_| format!("expected a number of seconds, got '{text}'"))
}

pub(crate) fn parse_timeout(text: &str) -> Result<Duration, String> {
    match parse_duration(text)? {
        Duration::ZERO => Err("must be more than 0s".into()),
        timeout => Ok(timeout),
    }
}

pub(crate) fn parse_connection_cap(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(cap) if cap >= 1 => Ok(cap),
        _ => Err(format!(
            "expected a whole number of at least 1, got '{text}'"
        )),
    }
}

/// Loopback: the only networks no packet from another host can claim to come from, so no
/// spoofed victim lives there, while the forwarders on the host itself (dnsmasq,
/// systemd-resolved), which send no cookies, do. A forwarder elsewhere proves its address with
/// a DNS cookie, or is named with `--rrl-exempt`.
pub(crate) const DEFAULT_RRL_EXEMPT: [&str; 2] = ["127.0.0.0/8", "::1"];

/// A file, or `-` for stderr.
pub(crate) fn parse_log_target(text: &str) -> Result<LogTarget, String> {
    match text {
        "" => Err("expected a file, or - for stderr".into()),
        "-" => Ok(LogTarget::Stderr),
        path => Ok(LogTarget::File(path.into())),
    }
}

/// An IP network, `10.0.0.0/8`, or one address.
pub(crate) fn parse_cidr(text: &str) -> Result<Cidr, String> {
    text.parse()
}

/// A network, or `none` (no exemption at all).
pub(crate) fn parse_exempt(text: &str) -> Result<Option<Cidr>, String> {
    match text {
        "none" => Ok(None),
        _ => text.parse().map(Some),
    }
}

/// Answers per second: the table counts up to 65,535 per second and key.
pub(crate) fn parse_rate(text: &str) -> Result<u32, String> {
    match text.parse::<u32>() {
        Ok(rate) if rate <= 60_000 => Ok(rate),
        _ => Err(format!(
            "expected a whole number from 0 to 60000, got '{text}'"
        )),
    }
}

/// The secret of DNS server cookies (`--cookie-secret`): 128 bits. It prints as `<redacted>`,
/// as a token does.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct CookieSecret(pub(crate) [u8; 16]);

impl fmt::Debug for CookieSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CookieSecret(<redacted>)")
    }
}

/// 32 hexadecimal digits (128 bits, the SipHash key of RFC 9018 cookies).
pub(crate) fn parse_cookie_secret(text: &str) -> Result<CookieSecret, String> {
    let digits = text.trim();
    let bytes: Option<Vec<u8>> = (digits.len() == 32 && digits.is_ascii())
        .then(|| {
            (0..32)
                .step_by(2)
                .map(|i| u8::from_str_radix(&digits[i..i + 2], 16).ok())
                .collect()
        })
        .flatten();
    // The value is a secret: the error does not repeat it.
    bytes
        .and_then(|bytes| <[u8; 16]>::try_from(bytes).ok())
        .map(CookieSecret)
        .ok_or_else(|| {
            format!(
                "expected 32 hexadecimal digits, got {} characters",
                digits.len()
            )
        })
}

/// An NSID: a text of 1 to 255 bytes (`hostname` stands for the host's name, read at start).
pub(crate) fn parse_nsid(text: &str) -> Result<String, String> {
    match text.len() {
        1..=255 => Ok(text.to_owned()),
        _ => Err(format!("expected 1 to 255 bytes, got {}", text.len())),
    }
}

pub(crate) fn parse_catch_up_rate(text: &str) -> Result<u32, String> {
    match text.parse::<u32>() {
        Ok(rate) if (1..=100_000).contains(&rate) => Ok(rate),
        _ => Err(format!(
            "expected a whole number from 1 to 100000, got '{text}'"
        )),
    }
}

pub(crate) fn parse_ipv4_prefix(text: &str) -> Result<u8, String> {
    parse_prefix(text, 32)
}

pub(crate) fn parse_ipv6_prefix(text: &str) -> Result<u8, String> {
    parse_prefix(text, 128)
}

fn parse_prefix(text: &str, most: u8) -> Result<u8, String> {
    match text.parse::<u8>() {
        Ok(bits) if bits <= most => Ok(bits),
        _ => Err(format!(
            "expected a prefix length from 0 to {most}, got '{text}'"
        )),
    }
}

/// At least a few: the plain requests take 4, the essential watches 8, the rest is for
/// services.
pub(crate) fn parse_agent_connections(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(count) if count >= 16 => Ok(count),
        _ => Err(format!(
            "expected a whole number of at least 16, got '{text}'"
        )),
    }
}

pub(crate) fn parse_watch_wait(text: &str) -> Result<Duration, String> {
    let wait = parse_duration(text)?;
    if wait < Duration::from_secs(1) || wait > Duration::from_secs(600) {
        return Err("Consul accepts a wait from 1s to 10m".into());
    }
    Ok(wait)
}
