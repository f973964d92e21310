//! Tests of workload compilation and of query building from a compiled
//! workload.

use std::collections::HashSet;
use std::sync::Arc;

use rand::rngs::StdRng;
use rand::SeedableRng;
use serde_json::json;

use super::*;

fn template(operations: serde_json::Value) -> Template {
    serde_json::from_value(json!({
        "name": "orders",
        "target": {"kind": "postgres", "table": "public.orders", "key_column": "order_id"},
        "workload": {"operations": operations, "key_distribution": "zipfian"}
    }))
    .unwrap()
}

fn mixed_template() -> Template {
    template(json!([
        {"kind": "POINT_LOOKUP", "weight_pct": 60,
         "sql": "SELECT * FROM {table} WHERE order_id = $1", "params": ["key"]},
        {"kind": "UPDATE", "weight_pct": 30,
         "sql": "UPDATE {table} SET note = $1, amount = $2 WHERE order_id = $3",
         "params": ["random_string(12)", "random_float(1, 100)", "key"]},
        {"kind": "INSERT", "weight_pct": 10,
         "sql": "INSERT INTO {table} (order_id, ref, created) VALUES ($1, $2, $3)",
         "params": ["new_key", "uuid", "now"]}
    ]))
}

fn pool_row(kind: &str, column: Option<&str>, seq: i64, value: Value) -> ValuePoolRow {
    ValuePoolRow {
        pool_id: format!("pool-{kind}-{seq}"),
        template_id: "tpl-orders".to_owned(),
        pool_kind: kind.to_owned(),
        column_name: column.map(str::to_owned),
        seq,
        value,
        created_at: None,
    }
}

fn key_rows(count: i64) -> Vec<ValuePoolRow> {
    (0..count).map(|seq| pool_row("KEY", Some("order_id"), seq, json!(seq * 10))).collect()
}

#[test]
fn compiled_workload_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<CompiledWorkload>();
    assert_send_sync::<Arc<CompiledWorkload>>();
}

#[test]
fn compile_keeps_kind_and_sql() {
    let workload = CompiledWorkload::compile(&mixed_template(), &key_rows(100), 0, 1).unwrap();
    let kinds: Vec<QueryKind> = workload.operations().iter().map(|operation| operation.kind).collect();
    assert_eq!(kinds, [QueryKind::PointLookup, QueryKind::Update, QueryKind::Insert]);
    assert_eq!(workload.operations()[0].sql, "SELECT * FROM {table} WHERE order_id = $1");
    assert_eq!(workload.operations()[1].generators.len(), 3);
    assert_eq!(workload.key_pool().len(), 100);
}

#[test]
fn next_binds_one_value_per_placeholder() {
    let workload = CompiledWorkload::compile(&mixed_template(), &key_rows(100), 0, 1).unwrap();
    let mut rng = StdRng::seed_from_u64(21);
    let mut counts = [0usize; 3];
    for _ in 0..10_000 {
        let (index, params) = workload.try_next(&mut rng).unwrap();
        counts[index] += 1;
        match index {
            0 => assert!(matches!(params[..], [ParamValue::Int(key)] if key % 10 == 0 && key < 1000), "{params:?}"),
            1 => assert!(
                matches!(&params[..], [ParamValue::Text(note), ParamValue::Float(_), ParamValue::Int(_)] if note.len() == 12),
                "{params:?}"
            ),
            _ => assert!(
                matches!(&params[..], [ParamValue::Int(_), ParamValue::Text(_), ParamValue::Timestamp(_)]),
                "{params:?}"
            ),
        }
    }
    // Expected 6,000, 3,000 and 1,000, each with a standard deviation
    // below 50.
    assert!((5750..6250).contains(&counts[0]), "{counts:?}");
    assert!((2750..3250).contains(&counts[1]), "{counts:?}");
    assert!((850..1150).contains(&counts[2]), "{counts:?}");
}

#[test]
fn try_next_into_reuses_vector() {
    let workload = CompiledWorkload::compile(&mixed_template(), &key_rows(10), 0, 1).unwrap();
    let mut rng = StdRng::seed_from_u64(22);
    let mut params = vec![ParamValue::Null; 7];
    for _ in 0..100 {
        let index = workload.try_next_into(&mut rng, &mut params).unwrap();
        assert_eq!(params.len(), workload.operations()[index].generators.len());
    }
}

#[test]
fn new_keys_start_above_pool_max() {
    let template = template(json!([
        {"kind": "INSERT", "weight_pct": 100,
         "sql": "INSERT INTO {table} (order_id) VALUES ($1)", "params": ["new_key"]}
    ]));
    let workload = CompiledWorkload::compile(&template, &key_rows(100), 0, 1).unwrap();
    let mut rng = StdRng::seed_from_u64(23);
    let keys: Vec<ParamValue> = (0..3).map(|_| workload.try_next(&mut rng).unwrap().1.remove(0)).collect();
    assert_eq!(keys, [ParamValue::Int(991), ParamValue::Int(992), ParamValue::Int(993)]);
}

#[test]
fn new_keys_of_workers_never_collide() {
    let template = template(json!([
        {"kind": "INSERT", "weight_pct": 100,
         "sql": "INSERT INTO {table} (order_id) VALUES ($1)", "params": ["new_key"]}
    ]));
    let count = 3;
    let workers: Vec<CompiledWorkload> =
        (0..count).map(|group| CompiledWorkload::compile(&template, &key_rows(50), group, count).unwrap()).collect();

    let shards: Vec<KeyShard> = workers.iter().map(CompiledWorkload::key_shard).collect();
    for pair in shards.windows(2) {
        assert_eq!(pair[0].end, pair[1].start, "shards are adjacent and disjoint: {shards:?}");
    }

    let mut rng = StdRng::seed_from_u64(24);
    let mut seen = HashSet::new();
    for (group, worker) in workers.iter().enumerate() {
        for _ in 0..1000 {
            let (_, params) = worker.try_next(&mut rng).unwrap();
            let [ParamValue::Int(key)] = params[..] else { panic!("{params:?}") };
            assert!(shards[group].contains(key), "worker {group} drew {key} outside {:?}", shards[group]);
            assert!(seen.insert(key), "key {key} drawn twice");
        }
    }
}

#[test]
fn concurrent_connections_share_workload() {
    let workload = Arc::new(CompiledWorkload::compile(&mixed_template(), &key_rows(100), 0, 1).unwrap());
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let workload = Arc::clone(&workload);
            std::thread::spawn(move || {
                let mut rng = StdRng::from_entropy();
                let mut new_keys = Vec::new();
                for _ in 0..5000 {
                    let (index, params) = workload.next(&mut rng);
                    if let (2, ParamValue::Int(key)) = (index, &params[0]) {
                        new_keys.push(*key);
                    }
                }
                new_keys
            })
        })
        .collect();

    let mut seen = HashSet::new();
    for thread in threads {
        for key in thread.join().unwrap() {
            assert!(seen.insert(key), "new key {key} drawn twice");
        }
    }
    assert!(!seen.is_empty());
}

#[test]
fn empty_key_pool_names_operation() {
    let error = CompiledWorkload::compile(&mixed_template(), &[], 0, 1).unwrap_err();
    assert_eq!(
        error.to_string(),
        "template \"orders\": workload.operations[0].params[0]: `key` in the POINT_LOOKUP operation needs existing keys, \
         but the KEY value pool is empty. Keys are sampled from the table when the template is saved or a run is \
         prepared, so check that the table has rows and prepare the run again"
    );
}

#[test]
fn empty_pool_compiles_without_key_params() {
    let template = template(json!([
        {"kind": "INSERT", "weight_pct": 100,
         "sql": "INSERT INTO {table} (order_id) VALUES ($1)", "params": ["new_key"]}
    ]));
    let workload = CompiledWorkload::compile(&template, &[], 1, 2).unwrap();
    assert_eq!(workload.key_shard(), KeyShard::for_worker(1, 1, 2).unwrap());
}

#[test]
fn new_key_rejects_text_keys() {
    let rows = [pool_row("KEY", Some("order_id"), 0, json!("A-17"))];
    let error = CompiledWorkload::compile(&mixed_template(), &rows, 0, 1).unwrap_err();
    assert_eq!(
        error.to_string(),
        "template \"orders\": workload.operations[2].params[0]: `new_key` needs integer keys, but the KEY value pool holds text"
    );
}

#[test]
fn text_keys_compile_without_new_key() {
    let template = template(json!([
        {"kind": "POINT_LOOKUP", "weight_pct": 100,
         "sql": "SELECT * FROM {table} WHERE code = $1", "params": ["key"]}
    ]));
    let rows = [pool_row("KEY", Some("code"), 0, json!("A-17"))];
    let workload = CompiledWorkload::compile(&template, &rows, 0, 1).unwrap();
    let mut rng = StdRng::seed_from_u64(25);
    assert_eq!(workload.try_next(&mut rng).unwrap(), (0, vec![ParamValue::Text("A-17".to_owned())]));
}

#[test]
fn invalid_template_is_rejected() {
    let mut template = mixed_template();
    template.workload.operations[0].weight_pct = 50.0;
    let error = CompiledWorkload::compile(&template, &key_rows(10), 0, 1).unwrap_err();
    assert_eq!(
        error.to_string(),
        "template \"orders\": workload.operations[*].weight_pct: weights sum to 90, expected 100"
    );
}

#[test]
fn group_outside_count_is_rejected() {
    let error = CompiledWorkload::compile(&mixed_template(), &key_rows(10), 2, 2).unwrap_err();
    assert_eq!(error.to_string(), "template \"orders\": new_key: worker group 2 is outside a group count of 2");
}

#[test]
fn new_key_base_reads_key_and_range_rows() {
    let rows = [
        pool_row("KEY", Some("order_id"), 0, json!(40)),
        pool_row("KEY", Some("order_id"), 1, json!(70)),
        pool_row("RANGE", Some("order_id"), 0, json!({"min": 1, "max": 5000})),
        pool_row("RANGE", Some("amount"), 0, json!([0, 999_999])),
        pool_row("ROW", Some("order_id"), 0, json!(123_456)),
    ];
    assert_eq!(new_key_base(&rows, Some("order_id")), 5001);
    assert_eq!(new_key_base(&rows, None), 5001, "the KEY rows name the key column");
    assert_eq!(new_key_base(&rows, Some("amount")), 1_000_000);
    assert_eq!(new_key_base(&rows[..2], None), 71);
    assert_eq!(new_key_base(&[], None), 1);
}
