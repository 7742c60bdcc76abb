//! DNS cookies (RFC 7873, RFC 9018) against rate limiting, with the real clients that send
//! them: BIND's `named` as a forwarder in front of the bridge, and BIND's `dig`. Rate limiting
//! is on for loopback here (`--rrl-exempt none`, 5 answers a second), so every source is a
//! client network that would be limited: a client returning a valid server cookie loses
//! nothing at full speed; a source without cookies in the same network is limited; a limited
//! client that sent a cookie is told BADCOOKIE with a server cookie, and passes with it.

use std::{
    net::{SocketAddr, UdpSocket},
    time::{Duration, Instant},
};

use hickory_proto::{
    op::{Edns, Message, MessageType, OpCode, Query, ResponseCode},
    rr::{
        Name, RData, RecordType,
        rdata::opt::{EdnsCode, EdnsOption},
    },
};

use crate::support::{
    ConsulAgent, consul::service, dns::query_bytes, metric, named::Named, run_tool, start_bridge,
};

const LIMIT: &str = "5";
const COOKIE: u16 = 10;

/// What came back for one question.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Got {
    /// NOERROR with the service's address.
    Record,
    /// An empty answer with TC set (rate limiting's slip without cookies).
    Truncated,
    /// BADCOOKIE, with the COOKIE option it carried.
    BadCookie(Vec<u8>),
    Other(ResponseCode),
}

fn got(message: &Message) -> Got {
    let cookie = message
        .edns
        .as_ref()
        .and_then(|edns| edns.option(EdnsCode::Cookie))
        .and_then(|option| match option {
            EdnsOption::Unknown(_, data) => Some(data.clone()),
            _ => None,
        });
    let has_record = message
        .answers
        .iter()
        .any(|r| matches!(&r.data, RData::A(a) if a.0.octets() == [10, 1, 0, 1]));
    match message.metadata.response_code {
        ResponseCode::BADCOOKIE => Got::BadCookie(cookie.unwrap_or_default()),
        ResponseCode::NoError if has_record => Got::Record,
        ResponseCode::NoError if message.metadata.truncation => Got::Truncated,
        rcode => Got::Other(rcode),
    }
}

/// `web.service.consul A` with ID `id`, with EDNS carrying `cookie` when given, and an NSID
/// request too when `nsid` (a question the fast path leaves to the general path).
fn question(id: u16, cookie: Option<&[u8]>, nsid: bool) -> Vec<u8> {
    let mut message = Message::new(id, MessageType::Query, OpCode::Query);
    message.metadata.recursion_desired = true;
    let name = Name::from_ascii("web.service.consul.").unwrap_or_else(|e| panic!("{e}"));
    message.add_query(Query::query(name, RecordType::A));
    if let Some(cookie) = cookie {
        let mut edns = Edns::new();
        edns.set_max_payload(1232);
        edns.options_mut()
            .insert(EdnsOption::Unknown(COOKIE, cookie.to_vec()));
        if nsid {
            edns.options_mut()
                .insert(EdnsOption::Unknown(3, Vec::new()));
        }
        message.set_edns(edns);
    }
    message.to_vec().unwrap_or_else(|e| panic!("{e}"))
}

/// Sends `count` questions (`ask(id)`) from `source` to `server` with `window` of them
/// outstanding at most, each given 2 s; what came back for each (`None`: nothing).
fn exchange_many(
    server: SocketAddr,
    source: &str,
    count: usize,
    window: usize,
    ask: impl Fn(u16) -> Vec<u8>,
) -> Vec<Option<Got>> {
    let socket = UdpSocket::bind((source, 0)).unwrap_or_else(|e| panic!("{e}"));
    socket
        .set_read_timeout(Some(Duration::from_millis(5)))
        .unwrap_or_else(|e| panic!("{e}"));
    let mut results: Vec<Option<Got>> = vec![None; count];
    let mut sent_at: Vec<Option<Instant>> = vec![None; count];
    let (mut next, mut outstanding) = (0usize, 0usize);
    let mut buf = [0u8; 1500];
    while next < count || outstanding > 0 {
        while next < count && outstanding < window {
            let _ = socket.send_to(&ask(next as u16), server);
            sent_at[next] = Some(Instant::now());
            next += 1;
            outstanding += 1;
        }
        if let Ok(len) = socket.recv(&mut buf)
            && let Ok(message) = Message::from_vec(&buf[..len])
        {
            let id = usize::from(message.metadata.id);
            if id < count && results[id].is_none() && sent_at[id].is_some() {
                results[id] = Some(got(&message));
                sent_at[id] = None;
                outstanding -= 1;
            }
        }
        for sent in sent_at.iter_mut() {
            if sent.is_some_and(|at| at.elapsed() > Duration::from_secs(2)) {
                *sent = None;
                outstanding -= 1;
            }
        }
    }
    results
}

/// Sends `count` questions from `source` at about 2,000 a second without waiting for answers,
/// as a spoofer does; what came back.
fn flood(server: SocketAddr, source: &str, count: usize, ask: impl Fn(u16) -> Vec<u8>) -> Vec<Got> {
    let socket = UdpSocket::bind((source, 0)).unwrap_or_else(|e| panic!("{e}"));
    socket
        .set_nonblocking(true)
        .unwrap_or_else(|e| panic!("{e}"));
    let mut answers = Vec::new();
    let mut buf = [0u8; 1500];
    let mut drain = |answers: &mut Vec<Got>| {
        while let Ok(len) = socket.recv(&mut buf) {
            if let Ok(message) = Message::from_vec(&buf[..len]) {
                answers.push(got(&message));
            }
        }
    };
    for id in 0..count {
        let _ = socket.send_to(&ask(id as u16), server);
        std::thread::sleep(Duration::from_micros(500));
        drain(&mut answers);
    }
    std::thread::sleep(Duration::from_millis(300));
    drain(&mut answers);
    answers
}

fn count(answers: &[Got], wanted: impl Fn(&Got) -> bool) -> usize {
    answers.iter().filter(|got| wanted(got)).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwarder_sending_cookies_loses_nothing_and_a_source_without_is_limited() {
    let consul = ConsulAgent::start().await;
    consul.register(service("web", "web1", "10.1.0.1")).await;
    let limits = ["--rrl-exempt", "none", "--rrl-ratelimit", LIMIT];
    let (bridge, dns) = start_bridge(&consul, &limits).await;
    // named asks the bridge from 127.0.0.9; its clients ask it from 127.0.0.10, 8 questions
    // outstanding (named itself drops clients past 10 waiting for one name).
    let named = Named::forwarding_to(dns.addr, "127.0.0.9").await;
    let started = Instant::now();
    let through_named = tokio::task::spawn_blocking({
        let named = named.addr;
        move || {
            exchange_many(named, "127.0.0.10", 3_000, 8, |id| {
                question(id, None, false)
            })
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let took = started.elapsed().as_secs_f64();
    let valid = metric(&bridge, "dns_cookies_total{result=\"valid\"}")
        .await
        .unwrap_or(0.0);
    let client_only = metric(&bridge, "dns_cookies_total{result=\"client_only\"}")
        .await
        .unwrap_or(0.0);
    let dropped = metric(&bridge, "rate_limited_total{action=\"dropped\"}")
        .await
        .unwrap_or(0.0);
    let slipped = metric(&bridge, "rate_limited_total{action=\"slipped\"}")
        .await
        .unwrap_or(0.0);
    println!(
        "client cookie only: {client_only}; rate limited: {dropped} dropped, {slipped} slipped"
    );
    let records = through_named
        .iter()
        .filter(|got| **got == Some(Got::Record))
        .count();
    println!(
        "through named: {records}/3000 answered with the record in {took:.2} s; the bridge saw \
         {valid} questions with a valid server cookie ({:.0} a second, the limit is {LIMIT})",
        valid / took
    );
    let others: Vec<(usize, &Option<Got>)> = through_named
        .iter()
        .enumerate()
        .filter(|(_, got)| **got != Some(Got::Record))
        .take(12)
        .collect();
    assert_eq!(records, 3_000, "{others:?} {}", named.log());
    assert_eq!((dropped, slipped), (0.0, 0.0), "the bridge limited nothing");
    assert!(
        valid / took > 10.0 * 5.0,
        "named must have asked far past the limit: {valid} in {took:.2} s"
    );
    // A source without cookies, in the same /24 as named, at about 2,000 a second.
    let started = Instant::now();
    let spoofed = tokio::task::spawn_blocking({
        let bridge = dns.addr;
        move || {
            flood(bridge, "127.0.0.11", 2_000, |id| {
                query_bytes(id, "web.service.consul.", RecordType::A, None)
            })
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let seconds = started.elapsed().as_secs_f64().ceil();
    let (full, truncated) = (
        count(&spoofed, |g| *g == Got::Record),
        count(&spoofed, |g| *g == Got::Truncated),
    );
    println!(
        "without cookies: 2000 sent in {seconds} s, {full} answered with the record, \
         {truncated} empty with TC, {} nothing",
        2_000 - spoofed.len()
    );
    assert!(full as f64 <= 5.0 * (seconds + 1.0), "{full} full answers");
    assert!(truncated > 0 && spoofed.len() < 2_000);
    drop(named);
    bridge.shutdown().await;
}

/// `dig` at `server` with `args`; its output.
async fn dig(server: SocketAddr, args: &[&str]) -> String {
    let mut all = vec![
        format!("@{}", server.ip()),
        "-p".into(),
        server.port().to_string(),
        "-b".into(),
        "127.0.0.12".into(),
        "+tries=1".into(),
        "+time=2".into(),
    ];
    all.extend(args.iter().map(|a| a.to_string()));
    run_tool("dig", all).await.unwrap_or_else(|e| panic!("{e}"))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cookie_returned_passes_and_a_limited_client_cookie_is_told_badcookie() {
    let consul = ConsulAgent::start().await;
    consul.register(service("web", "web1", "10.1.0.1")).await;
    let limits = ["--rrl-exempt", "none", "--rrl-ratelimit", LIMIT];
    let (bridge, dns) = start_bridge(&consul, &limits).await;
    // dig sends a cookie by default, and says whether ours checked out.
    let first = dig(dns.addr, &["web.service.consul"]).await;
    let learned = first
        .lines()
        .find_map(|line| line.strip_prefix("; COOKIE: "))
        .and_then(|rest| rest.strip_suffix(" (good)"))
        .unwrap_or_else(|| panic!("a server cookie dig calls good:\n{first}"))
        .to_owned();
    assert_eq!(learned.len(), 48, "client (8) and server (16) cookies");
    // 200 questions in one dig run, as fast as dig goes, each returning the cookie.
    let batch = std::env::temp_dir().join(format!("dig-batch-{}", std::process::id()));
    let line = format!("web.service.consul +cookie={learned}\n");
    std::fs::write(&batch, line.repeat(200)).unwrap_or_else(|e| panic!("{e}"));
    let started = Instant::now();
    let many = dig(dns.addr, &["-f", &batch.to_string_lossy()]).await;
    let took = started.elapsed();
    let _ = std::fs::remove_file(&batch);
    let answered = many.matches("status: NOERROR").count();
    let good = many.matches(" (good)").count();
    println!("dig with its cookie: {answered}/200 answered in {took:?}, {good} cookies good");
    assert_eq!((answered, good), (200, 200), "{many}");
    assert!(!many.contains("timed out"));
    // A client cookie alone, past the limit: slips are BADCOOKIE with a server cookie, not TC.
    let client_cookie = [0x42u8; 8];
    let flooded = tokio::task::spawn_blocking({
        let bridge = dns.addr;
        move || {
            flood(bridge, "127.0.0.13", 400, |id| {
                question(id, Some(&client_cookie), false)
            })
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let bad_cookies: Vec<Vec<u8>> = flooded
        .iter()
        .filter_map(|g| match g {
            Got::BadCookie(cookie) => Some(cookie.clone()),
            _ => None,
        })
        .collect();
    let full = count(&flooded, |g| *g == Got::Record);
    println!(
        "client cookie only: {full} answered, {} BADCOOKIE, {} TC, {} nothing",
        bad_cookies.len(),
        count(&flooded, |g| *g == Got::Truncated),
        400 - flooded.len()
    );
    assert!(!bad_cookies.is_empty() && full < 400);
    assert_eq!(count(&flooded, |g| *g == Got::Truncated), 0);
    let ours = bad_cookies[0].clone();
    assert!(
        ours.len() == 24 && ours[..8] == client_cookie,
        "{}",
        hex(&ours)
    );
    // With the server cookie BADCOOKIE gave, on the fast path and on the general path
    // (an NSID request too), nothing is limited.
    for nsid in [false, true] {
        let with_cookie = tokio::task::spawn_blocking({
            let (bridge, ours) = (dns.addr, ours.clone());
            move || {
                flood(bridge, "127.0.0.13", 400, |id| {
                    question(id, Some(&ours), nsid)
                })
            }
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            count(&with_cookie, |g| *g == Got::Record),
            400,
            "nsid {nsid}"
        );
    }
    // Malformed cookies (RFC 7873 5.2.2) get FORMERR; the same over TCP.
    for len in [7usize, 9, 41] {
        let bytes = question(9, Some(&vec![1u8; len]), false);
        let answer = Message::from_vec(&dns.asked_from("127.0.0.14").exchange_udp(&bytes).await)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            answer.metadata.response_code,
            ResponseCode::FormErr,
            "{len}"
        );
        let answer =
            Message::from_vec(&dns.exchange_tcp(&bytes).await).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            answer.metadata.response_code,
            ResponseCode::FormErr,
            "{len}"
        );
    }
    bridge.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bridges_sharing_a_secret_accept_each_others_cookies() {
    let consul = ConsulAgent::start().await;
    consul.register(service("web", "web1", "10.1.0.1")).await;
    let secret = ["--cookie-secret", "e5e973e5a6b2a43f48e7dc849e37bfcf"];
    let with = |extra: &[&'static str]| {
        let mut options = vec!["--rrl-exempt", "none", "--rrl-ratelimit", LIMIT];
        options.extend_from_slice(extra);
        options
    };
    let (one, one_dns) = start_bridge(&consul, &with(&secret)).await;
    let (two, two_dns) = start_bridge(&consul, &with(&secret)).await;
    let (other, other_dns) = start_bridge(&consul, &with(&[])).await;
    let first = dig(one_dns.addr, &["web.service.consul"]).await;
    let learned = first
        .lines()
        .find_map(|line| line.strip_prefix("; COOKIE: "))
        .and_then(|rest| rest.split(' ').next())
        .unwrap_or_else(|| panic!("{first}"))
        .to_owned();
    let at_two = dig(
        two_dns.addr,
        &["web.service.consul", &format!("+cookie={learned}")],
    )
    .await;
    assert!(at_two.contains("(good)"), "{at_two}");
    let valid = metric(&two, "dns_cookies_total{result=\"valid\"}").await;
    assert_eq!(
        valid,
        Some(1.0),
        "the second bridge checked the first one's cookie"
    );
    let elsewhere = dig(
        other_dns.addr,
        &["web.service.consul", &format!("+cookie={learned}")],
    )
    .await;
    assert_eq!(
        metric(&other, "dns_cookies_total{result=\"valid\"}").await,
        Some(0.0),
        "a bridge with another secret does not: {elsewhere}"
    );
    one.shutdown().await;
    two.shutdown().await;
    other.shutdown().await;
}
