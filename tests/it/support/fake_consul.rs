//! A scripted fake Consul HTTP API, for the faults a real agent will not show on demand: index
//! going backwards or 0, error statuses, bodies cut short, invalid or huge, requests that hang.
//! It serves one datacenter (`dc1`) with one service (`web`), answers blocking queries the way
//! Consul does (park until the index moves or `wait` ends), and counts requests per path.
//! Used beside the real-agent tests, never instead of them.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::watch,
    task::JoinHandle,
};

/// How the fake answers the watched endpoints (`/v1/catalog/services` and
/// `/v1/health/service/web`) from now on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Behaviour {
    /// Like Consul: the current data and index; blocking queries park.
    Normal,
    /// This status with this body.
    Status(u16, &'static str),
    /// A `Content-Length` larger than the body, then the connection closes.
    CutBody,
    /// Status 200 with a body that is not JSON.
    InvalidJson,
    /// Never answers; the connection stays open.
    Hang,
    /// Status 200 with a 50 MB body (no `Content-Length`, the connection close ends it).
    Huge,
    /// The data, always with `X-Consul-Index: 0`, at once.
    IndexZero,
    /// The data with an index lower than any given before, at once, and then blocking as
    /// usual on that lower index (what an agent restored from an older snapshot does).
    IndexBackwards,
}

struct State {
    behaviour: Behaviour,
    index: u64,
    web_address: String,
    requests: HashMap<String, u64>,
    /// Every request target (path and query), in order.
    targets: Vec<String>,
    /// `X-Consul-LastContact` of every answer, in milliseconds.
    last_contact_ms: u64,
}

/// A running fake; stops when dropped.
pub struct FakeConsul {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    changed: watch::Sender<u64>,
    task: JoinHandle<()>,
}

impl FakeConsul {
    /// Starts on a free loopback port with `web` at `web_address`, index 10.
    pub async fn start(web_address: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind fake");
        let addr = listener.local_addr().expect("addr");
        let state = Arc::new(Mutex::new(State {
            behaviour: Behaviour::Normal,
            index: 10,
            web_address: web_address.into(),
            requests: HashMap::new(),
            targets: Vec::new(),
            last_contact_ms: 0,
        }));
        let (changed, _) = watch::channel(0);
        let task = tokio::spawn(accept(listener, state.clone(), changed.clone()));
        Self {
            addr,
            state,
            changed,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Switches behaviour and wakes parked requests, so the change shows at once.
    pub fn set_behaviour(&self, behaviour: Behaviour) {
        self.with_state(|s| s.behaviour = behaviour);
        self.changed.send_modify(|n| *n += 1);
    }

    /// Moves `web` to a new address under a higher index, as a registration change would.
    pub fn move_web(&self, address: &str) {
        self.with_state(|s| {
            s.index += 5;
            s.web_address = address.into();
        });
        self.changed.send_modify(|n| *n += 1);
    }

    /// Answers say the answering server last heard from the leader `ms` ago.
    pub fn set_last_contact(&self, ms: u64) {
        self.with_state(|s| s.last_contact_ms = ms);
    }

    /// The targets (path and query) of the requests received so far on paths starting with
    /// `prefix`, in order.
    pub fn targets(&self, prefix: &str) -> Vec<String> {
        self.with_state(|s| {
            s.targets
                .iter()
                .filter(|target| target.starts_with(prefix))
                .cloned()
                .collect()
        })
    }

    /// Requests received so far on paths starting with `prefix`.
    pub fn requests(&self, prefix: &str) -> u64 {
        self.with_state(|s| {
            s.requests
                .iter()
                .filter(|(path, _)| path.starts_with(prefix))
                .map(|(_, n)| n)
                .sum()
        })
    }

    fn with_state<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self.state.lock().expect("fake state"))
    }
}

impl Drop for FakeConsul {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept(listener: TcpListener, state: Arc<Mutex<State>>, changed: watch::Sender<u64>) {
    let mut connections = tokio::task::JoinSet::new();
    while let Ok((stream, _)) = listener.accept().await {
        connections.spawn(serve(stream, state.clone(), changed.subscribe()));
        while connections.try_join_next().is_some() {}
    }
}

/// One request per connection (`Connection: close`), which keeps the fake simple.
async fn serve(mut stream: TcpStream, state: Arc<Mutex<State>>, mut changed: watch::Receiver<u64>) {
    let Some(target) = read_request_target(&mut stream).await else {
        return;
    };
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let params: HashMap<&str, &str> = query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .collect();
    let asked_index: u64 = params
        .get("index")
        .and_then(|i| i.parse().ok())
        .unwrap_or(0);
    let wait = params
        .get("wait")
        .and_then(|w| w.strip_suffix("ms"))
        .and_then(|ms| ms.parse().ok())
        .map_or(Duration::ZERO, Duration::from_millis);

    let behaviour = {
        let mut s = state.lock().expect("fake state");
        *s.requests.entry(path.to_owned()).or_default() += 1;
        s.targets.push(target.clone());
        s.behaviour.clone()
    };
    let last_contact = state.lock().expect("fake state").last_contact_ms;
    let watched = path == "/v1/catalog/services" || path == "/v1/health/service/web";
    if !watched {
        let body = match path {
            "/v1/agent/self" => r#"{"Config":{"Datacenter":"dc1"}}"#.to_owned(),
            "/v1/catalog/datacenters" => r#"["dc1"]"#.to_owned(),
            _ if path.starts_with("/v1/health/service/") => "[]".to_owned(),
            // No failing check.
            _ if path.starts_with("/v1/health/state/") => "[]".to_owned(),
            _ => return respond(&mut stream, 404, None, 0, b"not found").await,
        };
        let index = state.lock().expect("fake state").index;
        return respond(&mut stream, 200, Some(index), last_contact, body.as_bytes()).await;
    }

    match behaviour {
        Behaviour::Normal => {
            let current = state.lock().expect("fake state").index;
            if asked_index >= current && !wait.is_zero() {
                // Park like Consul: until something changes or the wait is over.
                let _ = tokio::time::timeout(wait, changed.changed()).await;
            }
            let (index, body) = data(&state, path);
            respond(&mut stream, 200, Some(index), last_contact, body.as_bytes()).await;
        }
        Behaviour::Status(code, body) => {
            respond(&mut stream, code, None, last_contact, body.as_bytes()).await
        }
        Behaviour::CutBody => {
            let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                        X-Consul-Index: 99\r\nContent-Length: 5000\r\nConnection: close\r\n\r\n";
            let _ = stream.write_all(head.as_bytes()).await;
            let _ = stream.write_all(b"[{\"Node\":{\"Node\":\"n1\"").await;
        }
        Behaviour::InvalidJson => {
            let index = state.lock().expect("fake state").index + 1;
            respond(&mut stream, 200, Some(index), 0, b"<html>not json</html>").await;
        }
        Behaviour::Hang => {
            let mut sink = [0u8; 64];
            // Hold the connection until the client gives up.
            while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
        }
        Behaviour::Huge => {
            let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                        X-Consul-Index: 99\r\nConnection: close\r\n\r\n";
            if stream.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            let chunk = vec![b' '; 1 << 20];
            for _ in 0..50 {
                if stream.write_all(&chunk).await.is_err() {
                    return;
                }
            }
        }
        Behaviour::IndexZero => {
            let (_, body) = data(&state, path);
            respond(&mut stream, 200, Some(0), 0, body.as_bytes()).await;
        }
        Behaviour::IndexBackwards => {
            let lower = 3;
            if asked_index >= lower && !wait.is_zero() {
                let _ = tokio::time::timeout(wait, changed.changed()).await;
            }
            let (_, body) = data(&state, path);
            respond(&mut stream, 200, Some(lower), 0, body.as_bytes()).await;
        }
    }
}

/// The current index and the JSON for a watched path.
fn data(state: &Mutex<State>, path: &str) -> (u64, String) {
    let s = state.lock().expect("fake state");
    let body = if path == "/v1/catalog/services" {
        r#"{"consul":[],"web":["primary"]}"#.to_owned()
    } else {
        format!(
            r#"[{{"Node":{{"Node":"node1","Address":"127.0.0.1","Meta":{{}}}},
                "Service":{{"ID":"web1","Service":"web","Tags":["primary"],"Address":"{}","Port":80}},
                "Checks":[{{"Status":"passing"}}]}}]"#,
            s.web_address
        )
    };
    (s.index, body)
}

/// Reads the request head and returns its target (`/v1/...?...`).
async fn read_request_target(stream: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await.ok()?;
        if n == 0 || head.len() > 64 * 1024 {
            return None;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = head.split(|b| *b == b'\r').next()?;
    let line = std::str::from_utf8(line).ok()?;
    line.split(' ').nth(1).map(str::to_owned)
}

async fn respond(
    stream: &mut TcpStream,
    status: u16,
    index: Option<u64>,
    last_contact_ms: u64,
    body: &[u8],
) {
    let mut head = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\nX-Consul-LastContact: {last_contact_ms}\r\n",
        body.len()
    );
    if let Some(index) = index {
        head.push_str(&format!("X-Consul-Index: {index}\r\n"));
    }
    head.push_str("\r\n");
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(body).await;
    let _ = stream.shutdown().await;
}
