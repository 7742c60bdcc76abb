//! The in-process answer path: nanoseconds from raw request bytes to response bytes on the UDP
//! fast path, for a cached A, a cached SRV with additionals, and an NXDOMAIN, over a preloaded
//! catalog (no Consul). A counting allocator shows how many heap allocations each query makes.
//! Run: `cargo bench --bench answer_path`.

use std::{
    alloc::{GlobalAlloc, Layout, System},
    hint::black_box,
    sync::atomic::{AtomicU64, Ordering},
};

use consul_dns_bridge::{
    Config, Parsed,
    bench_support::{AnswerPath, HealthEntry},
};
use criterion::{Criterion, criterion_group, criterion_main};
use hickory_proto::{
    op::{Edns, Message, MessageType, OpCode, Query},
    rr::{Name, RecordType},
};

/// Counts every allocation, so the bench can show the query path makes none.
struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: defers every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract is passed through.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract is passed through.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract is passed through.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn entry(node: &str, node_address: &str, id: &str, address: &str, port: u16) -> HealthEntry {
    let json = format!(
        r#"{{"Node":{{"Node":"{node}","Address":"{node_address}","Meta":{{"rack":"r1"}}}},
            "Service":{{"ID":"{id}","Service":"svc","Tags":["primary"],"Address":"{address}","Port":{port}}},
            "Checks":[{{"Status":"passing"}}]}}"#
    );
    serde_json::from_str(&json).expect("fixture JSON")
}

fn fast_path() -> AnswerPath {
    let config = match Config::parse(["bench", "--http-listen", "off"]) {
        Ok(Parsed::Run(config)) => config,
        _ => panic!("bench config"),
    };
    let web = (1..=3)
        .map(|i| {
            entry(
                &format!("n{i}"),
                &format!("10.0.0.{i}"),
                &format!("web{i}"),
                &format!("10.1.0.{i}"),
                80,
            )
        })
        .collect();
    // db on its nodes' addresses: SRV targets are node names, with the node meta as TXT.
    let db = (1..=2)
        .map(|i| {
            entry(
                &format!("db-node{i}"),
                &format!("10.2.0.{i}"),
                &format!("db{i}"),
                "",
                5432,
            )
        })
        .collect();
    let services = vec![("web".into(), web), ("db".into(), db)];
    AnswerPath::preloaded(&config, "dc1", services).expect("client (never used)")
}

fn request(name: &str, qtype: RecordType) -> Vec<u8> {
    let mut message = Message::new(0x1234, MessageType::Query, OpCode::Query);
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(Name::from_ascii(name).expect("name"), qtype));
    let mut edns = Edns::new();
    edns.set_max_payload(1232);
    message.set_edns(edns);
    message.to_vec().expect("encode")
}

fn bench(c: &mut Criterion) {
    let fast = fast_path();
    let cases = [
        (
            "cached A (3 instances)",
            request("web.service.consul.", RecordType::A),
        ),
        (
            "cached SRV with additionals (2 instances)",
            request("_db._tcp.service.consul.", RecordType::SRV),
        ),
        ("NXDOMAIN", request("nope.service.consul.", RecordType::A)),
    ];
    let (mut out, mut scratch) = (Vec::with_capacity(1232), Vec::with_capacity(1232));
    for (label, bytes) in &cases {
        let answered = fast.answer(bytes, &mut out, &mut scratch);
        assert!(answered, "{label}: the fast path answers it");
        let before = ALLOCATIONS.load(Ordering::Relaxed);
        const RUNS: u64 = 10_000;
        for _ in 0..RUNS {
            black_box(fast.answer(black_box(bytes), &mut out, &mut scratch));
        }
        let allocations = ALLOCATIONS.load(Ordering::Relaxed) - before;
        println!(
            "{label}: {} bytes answered; {allocations} heap allocations in {RUNS} queries",
            out.len()
        );
        c.bench_function(label, |b| {
            b.iter(|| black_box(fast.answer(black_box(bytes), &mut out, &mut scratch)))
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
