//! The capacity report: a [`Measurement`] as figures per notification, the ceilings DynamoDB's
//! per-partition limits imply, and dollars per million notifications at public on-demand
//! prices.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::run::Measurement;
use super::{Records, Service};

/// Public us-east-1 on-demand prices, as `/work/shared/AWS-FACTS.md` states them.
#[derive(Debug, Clone, Copy)]
pub struct Prices {
    /// Where the figures come from and when.
    pub source: &'static str,
    /// DynamoDB, $ per million write request units.
    pub dynamo_write_million: f64,
    /// DynamoDB, $ per million read request units.
    pub dynamo_read_million: f64,
    /// DynamoDB storage, $ per GB-month.
    pub dynamo_storage_gb_month: f64,
    /// SQS standard queue, $ per million requests (64 KB chunks).
    pub sqs_million: f64,
    /// KMS, $ per million requests.
    pub kms_million: f64,
    /// EventBridge Scheduler, $ per million invocations.
    pub scheduler_million: f64,
    /// Lambda arm64, $ per GB-second.
    pub lambda_gb_second: f64,
    /// Lambda, $ per million requests.
    pub lambda_million: f64,
}

/// The prices the report uses.
pub const PRICES: Prices = Prices {
    source: "us-east-1 on-demand, late 2026 (DynamoDB since the Nov 2024 cut), from /work/shared/AWS-FACTS.md",
    dynamo_write_million: 0.625,
    dynamo_read_million: 0.125,
    dynamo_storage_gb_month: 0.25,
    sqs_million: 0.40,
    kms_million: 3.00,
    scheduler_million: 1.00,
    lambda_gb_second: 0.000_013_333_4,
    lambda_million: 0.20,
};

/// DynamoDB's throughput limits per partition (and so per partition key and per item).
pub const WCU_PER_PARTITION: f64 = 1_000.0;
/// Read units per second per partition.
pub const RCU_PER_PARTITION: f64 = 3_000.0;
/// DynamoDB bills this much storage overhead per item.
pub const ITEM_OVERHEAD_BYTES: u64 = 100;
/// How long notifications are kept (their TTL).
pub const RETENTION_DAYS: f64 = 7.0;

/// Units and calls on one partition key, one item, or one table/index and API.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Load {
    pub wru: f64,
    pub rru: f64,
    pub calls: u64,
}

/// Calls of one SQS, KMS or Scheduler API.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceLoad {
    pub calls: u64,
    /// Billed requests (SQS: 64 KB chunks).
    pub billed: u64,
    /// Batch entries.
    pub entries: u64,
    /// Messages received.
    pub received: u64,
    /// Calls that received at least one message.
    pub busy: u64,
}

/// The figures of a measurement, per notification where it says so.
#[derive(Debug, Clone)]
pub struct Summary {
    pub notifications: f64,
    /// DynamoDB totals (not per notification).
    pub dynamo: Load,
    /// By `(table[/index], API)`.
    pub by_table_api: BTreeMap<(String, String), Load>,
    /// By partition key (`table[/index] value`).
    pub by_partition: BTreeMap<String, Load>,
    /// By item (`table pk / sk`).
    pub by_item: BTreeMap<String, Load>,
    /// By partition key and API.
    pub by_partition_api: BTreeMap<(String, String), Load>,
    /// Other services by `(service, API)`.
    pub services: BTreeMap<(Service, String), ServiceLoad>,
}

impl Summary {
    /// Aggregates `records` of a send of `notifications`; keys are shown with `names`.
    pub fn new(records: &Records, notifications: usize, names: &Names) -> Summary {
        let mut summary = Summary {
            notifications: notifications.max(1) as f64,
            dynamo: Load::default(),
            by_table_api: BTreeMap::new(),
            by_partition: BTreeMap::new(),
            by_item: BTreeMap::new(),
            by_partition_api: BTreeMap::new(),
            services: BTreeMap::new(),
        };
        for call in &records.dynamo {
            summary.dynamo.calls += 1;
            summary.dynamo.wru += call.wru();
            summary.dynamo.rru += call.rru();
            // Calls count once per table (or table/index) the request names; units go to the
            // table or index they land on.
            for table in &call.tables {
                summary.by_table_api.entry((names.table_label(table), call.api.clone())).or_default().calls += 1;
            }
            for item in &call.items {
                let label = names.table(&item.table, item.index.as_deref());
                let row = summary.by_table_api.entry((label.clone(), call.api.clone())).or_default();
                row.wru += item.wru;
                row.rru += item.rru;
                let partition =
                    summary.by_partition.entry(format!("{label} {}", names.key(&item.partition))).or_default();
                partition.wru += item.wru;
                partition.rru += item.rru;
                partition.calls += 1;
                let by_api = summary
                    .by_partition_api
                    .entry((format!("{label} {}", names.key(&item.partition)), call.api.clone()))
                    .or_default();
                by_api.wru += item.wru;
                by_api.rru += item.rru;
                by_api.calls += 1;
                if let (None, Some(sort)) = (&item.index, &item.sort) {
                    let key = format!("{label} {} / {}", names.key(&item.partition), names.key(sort));
                    let row = summary.by_item.entry(key).or_default();
                    row.wru += item.wru;
                    row.rru += item.rru;
                    row.calls += 1;
                }
            }
        }
        for call in &records.services {
            let row = summary.services.entry((call.service, call.api.clone())).or_default();
            row.calls += 1;
            row.billed += call.billed;
            row.entries += call.entries;
            row.received += call.received;
            row.busy += u64::from(call.received > 0);
        }
        summary
    }

    /// WRU per notification.
    pub fn wru(&self) -> f64 {
        self.dynamo.wru / self.notifications
    }

    /// RRU per notification.
    pub fn rru(&self) -> f64 {
        self.dynamo.rru / self.notifications
    }

    /// DynamoDB calls per notification.
    pub fn calls(&self) -> f64 {
        self.dynamo.calls as f64 / self.notifications
    }

    /// The entry of `map` with the largest `by`.
    pub fn busiest(map: &BTreeMap<String, Load>, by: fn(&Load) -> f64) -> Option<(&String, &Load)> {
        map.iter().max_by(|a, b| by(a.1).total_cmp(&by(b.1)))
    }

    fn service(&self, service: Service) -> impl Iterator<Item = (&String, &ServiceLoad)> {
        self.services.iter().filter(move |((s, _), _)| *s == service).map(|((_, api), load)| (api, load))
    }

    /// `ReceiveMessage` calls that returned messages: one dispatch invocation each on AWS (the
    /// event source mapping hands one batch to one invocation).
    pub fn receive_batches(&self) -> u64 {
        self.service(Service::Sqs).filter(|(api, _)| *api == "ReceiveMessage").map(|(_, l)| l.busy).sum()
    }

    /// `ReceiveMessage` calls that returned nothing: the pollers' idle cost, by the second.
    pub fn idle_receives(&self) -> u64 {
        self.service(Service::Sqs).filter(|(api, _)| *api == "ReceiveMessage").map(|(_, l)| l.calls - l.busy).sum()
    }

    /// SQS requests billed for the work (64 KB chunks), idle receives left out.
    pub fn sqs_billed(&self) -> u64 {
        self.service(Service::Sqs).map(|(_, l)| l.billed).sum::<u64>() - self.idle_receives()
    }

    /// Calls of `service`.
    pub fn service_calls(&self, service: Service) -> u64 {
        self.service(service).map(|(_, l)| l.calls).sum()
    }
}

/// How ids and table names are shown: table stems, `{account}`, `{operation}`.
#[derive(Debug, Clone)]
pub struct Names {
    pub table_prefix: String,
    pub account: String,
    pub operation: String,
}

impl Names {
    /// `stem` or `stem/index`.
    pub fn table(&self, table: &str, index: Option<&str>) -> String {
        let stem = table.strip_prefix(&self.table_prefix).unwrap_or(table);
        match index {
            Some(index) => format!("{stem}/{index}"),
            None => stem.to_owned(),
        }
    }

    /// A `table` or `table/index` label with the prefix removed.
    pub fn table_label(&self, label: &str) -> String {
        label.strip_prefix(&self.table_prefix).unwrap_or(label).to_owned()
    }

    /// A key value with the account and operation ids replaced.
    pub fn key(&self, value: &str) -> String {
        value.replace(&self.account, "{account}").replace(&self.operation, "{operation}")
    }
}

/// Dollars per million notifications, by service.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Costs {
    pub dynamo_writes: f64,
    pub dynamo_reads: f64,
    pub sqs: f64,
    pub kms: f64,
    pub scheduler: f64,
    pub lambda_compute: f64,
    pub lambda_requests: f64,
    /// Storage of what one notification leaves behind, kept [`RETENTION_DAYS`].
    pub storage: f64,
}

impl Costs {
    /// Everything but storage.
    pub fn requests_and_compute(&self) -> f64 {
        self.dynamo_writes
            + self.dynamo_reads
            + self.sqs
            + self.kms
            + self.scheduler
            + self.lambda_compute
            + self.lambda_requests
    }
}

/// The Lambda side of a measurement: GB-seconds and invocations per notification.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LambdaFigures {
    /// The function memory assumed.
    pub memory_mb: u64,
    /// GB-s of the send function, per notification (its CPU time at that memory).
    pub send_gb_s: f64,
    /// GB-s of the dispatch function, per notification.
    pub dispatch_gb_s: f64,
    /// GB-s if billed duration were the wall time measured on moto (an upper bound).
    pub wall_gb_s: f64,
    /// Invocations per notification: the send, plus one dispatch per received batch.
    pub requests: f64,
}

/// Everything the report prints, computed.
#[derive(Debug, Clone)]
pub struct Report {
    pub summary: Summary,
    pub names: Names,
    pub lambda: LambdaFigures,
    pub costs: Costs,
    /// Bytes one notification occupies (items + DynamoDB's per-item overhead).
    pub stored_bytes_per_notification: f64,
}

impl Report {
    /// The report of `m` with functions of `memory_mb`.
    pub fn new(m: &Measurement, memory_mb: u64) -> Report {
        let names =
            Names { table_prefix: m.table_prefix.clone(), account: m.account.clone(), operation: m.operation.clone() };
        let summary = Summary::new(&m.all(), m.recipients, &names);
        let n = summary.notifications;
        let gb = memory_mb as f64 / 1024.0;
        let lambda = LambdaFigures {
            memory_mb,
            send_gb_s: m.cpu_send.as_secs_f64() * gb / n,
            dispatch_gb_s: m.cpu_dispatch.as_secs_f64() * gb / n,
            wall_gb_s: (m.wall_send + m.wall_dispatch).as_secs_f64() * gb / n,
            requests: (1 + summary.receive_batches()) as f64 / n,
        };
        let stored = (m.stored_bytes + m.stored_items * ITEM_OVERHEAD_BYTES) as f64 / n;
        let p = PRICES;
        let costs = Costs {
            dynamo_writes: summary.wru() * p.dynamo_write_million,
            dynamo_reads: summary.rru() * p.dynamo_read_million,
            sqs: summary.sqs_billed() as f64 / n * p.sqs_million,
            kms: summary.service_calls(Service::Kms) as f64 / n * p.kms_million,
            scheduler: summary.service_calls(Service::Scheduler) as f64 / n * p.scheduler_million,
            lambda_compute: (lambda.send_gb_s + lambda.dispatch_gb_s) * 1e6 * p.lambda_gb_second,
            lambda_requests: lambda.requests * p.lambda_million,
            storage: stored * 1e6 / f64::from(1u32 << 30) * p.dynamo_storage_gb_month * RETENTION_DAYS / 30.4375,
        };
        Report { summary, names, lambda, costs, stored_bytes_per_notification: stored }
    }

    /// The busiest partition key by write units, and its WRU per notification.
    pub fn busiest_write_key(&self) -> Option<(&String, f64)> {
        Summary::busiest(&self.summary.by_partition, |l| l.wru).map(|(k, l)| (k, l.wru / self.summary.notifications))
    }

    /// The fewest seconds the send can take when every partition key gets `write_wcu` write
    /// units per second: the busiest key's units over its budget (the burst left out).
    pub fn predicted_seconds(&self, write_wcu: f64) -> Option<f64> {
        let (_, per_notification) = self.busiest_write_key()?;
        (write_wcu > 0.0).then(|| self.summary.notifications * per_notification / write_wcu)
    }

    /// The notifications per second a partition limit allows for a load of `per_notification`.
    fn ceiling(limit: f64, per_notification: f64) -> String {
        if per_notification <= 0.0 { "unbounded".into() } else { format!("{:.0}", limit / per_notification) }
    }

    /// The report as printed.
    pub fn render(&self, m: &Measurement) -> String {
        let s = &self.summary;
        let n = s.notifications;
        let mut out = String::new();
        let w = &mut out;
        let _ = writeln!(
            w,
            "pushgate capacity report: {} recipients (half APN, half FCM; 3 variables each, Liquid title/body/data, \
             2 tags), local AWS mode on moto through the metering proxy",
            m.recipients
        );
        let _ = writeln!(
            w,
            "operation {}: {}, sent {}, failed {}; fakes received {} APN + {} FCM; {} queue consumers",
            self.names.key(&m.operation),
            m.status(),
            m.counter("sent"),
            m.counter("failed"),
            m.delivered_apns,
            m.delivered_fcm,
            m.workers
        );
        let _ = writeln!(w);
        let _ = writeln!(w, "DynamoDB per notification (send + dispatch; set-up excluded)");
        let _ = writeln!(w, "  {:<44} {:>8} {:>8} {:>8}", "", "WRU", "RRU", "calls");
        let _ = writeln!(w, "  {:<44} {:>8.3} {:>8.3} {:>8.3}", "total", s.wru(), s.rru(), s.calls());
        let mut by_table: BTreeMap<&str, Load> = BTreeMap::new();
        for ((table, _), load) in &s.by_table_api {
            let row = by_table.entry(table).or_default();
            row.wru += load.wru;
            row.rru += load.rru;
            row.calls += load.calls;
        }
        for (table, load) in &by_table {
            let _ = writeln!(
                w,
                "  {:<44} {:>8.3} {:>8.3} {:>8.3}",
                format!("table {table}"),
                load.wru / n,
                load.rru / n,
                load.calls as f64 / n
            );
            for ((_, api), load) in s.by_table_api.iter().filter(|((t, _), _)| t == table) {
                let _ = writeln!(
                    w,
                    "  {:<44} {:>8.3} {:>8.3} {:>8.3}",
                    format!("    {api}"),
                    load.wru / n,
                    load.rru / n,
                    load.calls as f64 / n
                );
            }
        }
        let mut by_api: BTreeMap<&str, Load> = BTreeMap::new();
        for ((_, api), load) in &s.by_table_api {
            let row = by_api.entry(api).or_default();
            row.wru += load.wru;
            row.rru += load.rru;
        }
        let mut api_calls: BTreeMap<String, u64> = BTreeMap::new();
        for call in &m.all().dynamo {
            *api_calls.entry(call.api.clone()).or_default() += 1;
        }
        let _ = writeln!(w, "  by API");
        for (api, load) in &by_api {
            let calls = api_calls.get(*api).copied().unwrap_or(0);
            let _ = writeln!(
                w,
                "  {:<44} {:>8.3} {:>8.3} {:>8.3}",
                format!("    {api}"),
                load.wru / n,
                load.rru / n,
                calls as f64 / n
            );
        }

        let _ = writeln!(w);
        let _ = writeln!(
            w,
            "Hot keys (DynamoDB: {WCU_PER_PARTITION:.0} WCU/s and {RCU_PER_PARTITION:.0} RCU/s per partition key)"
        );
        let mut partitions: Vec<(&String, &Load)> = s.by_partition.iter().collect();
        partitions.sort_by(|a, b| b.1.wru.total_cmp(&a.1.wru).then(b.1.rru.total_cmp(&a.1.rru)));
        let _ = writeln!(w, "  {:<72} {:>8} {:>8}", "partition key (top 5 by WRU)", "WRU/n", "RRU/n");
        for (key, load) in partitions.iter().take(5) {
            let _ = writeln!(w, "  {:<72} {:>8.3} {:>8.3}", key, load.wru / n, load.rru / n);
            for ((_, api), load) in s.by_partition_api.iter().filter(|((k, _), _)| k == *key) {
                let _ = writeln!(
                    w,
                    "  {:<72} {:>8.3} {:>8.3}   ({:.3} items/notification)",
                    format!("    {api}"),
                    load.wru / n,
                    load.rru / n,
                    load.calls as f64 / n
                );
            }
        }
        let scopes = [("partition key", &s.by_partition, "account"), ("item", &s.by_item, "operation")];
        for (what, loads, per) in scopes {
            let write = Summary::busiest(loads, |l| l.wru).map(|(k, l)| (k, l.wru, "WRU", WCU_PER_PARTITION));
            let read = Summary::busiest(loads, |l| l.rru).map(|(k, l)| (k, l.rru, "RRU", RCU_PER_PARTITION));
            for (key, units, unit, capacity) in [write, read].into_iter().flatten() {
                let _ = writeln!(
                    w,
                    "  busiest {what} by {unit}: {key}: {:.3} {unit}/notification → ≤ {} notifications/s per {per}",
                    units / n,
                    Self::ceiling(capacity, units / n)
                );
            }
        }

        if let Some((config, counts)) = &m.faults {
            let _ = writeln!(w);
            let _ = writeln!(
                w,
                "Fault layer: {} WCU/s per partition key, {:.1} s of burst, {:?} throttling errors, transaction \
                 conflicts {}",
                config.write_wcu,
                config.burst_seconds,
                config.mode,
                if config.conflicts { "on" } else { "off" }
            );
            let _ = writeln!(w, "  throttled requests: {}; conflicts: {}", counts.throttles(), counts.conflicts());
            for ((api, kind), count) in &counts.by_api {
                let _ = writeln!(w, "    {:<44} {count}", format!("{api} {}", kind.name()));
            }
            let sqs = |api: &str| s.services.get(&(Service::Sqs, api.to_owned())).cloned().unwrap_or_default();
            let (queued, received) = (sqs("SendMessageBatch").entries, sqs("ReceiveMessage").received);
            let _ = writeln!(
                w,
                "  queue: {queued} chunks sent, {received} received ({} redeliveries)",
                received.saturating_sub(queued)
            );
            let elapsed = (m.wall_send + m.wall_dispatch).as_secs_f64();
            match (self.busiest_write_key(), self.predicted_seconds(config.write_wcu)) {
                (Some((key, units)), Some(predicted)) => {
                    let _ = writeln!(
                        w,
                        "  took {elapsed:.1} s; the meter predicts ≥ {predicted:.1} s at this budget (busiest key {key}: \
                         {units:.3} WRU/notification → ≤ {:.0} notifications/s), {:.2}× the prediction",
                        config.write_wcu / units,
                        elapsed / predicted
                    );
                }
                _ => {
                    let _ = writeln!(w, "  took {elapsed:.1} s");
                }
            }
        }

        let _ = writeln!(w);
        let _ = writeln!(w, "SQS, KMS, Scheduler per notification");
        let _ = writeln!(w, "  {:<44} {:>8} {:>8} {:>8} {:>8}", "", "calls", "billed", "entries", "received");
        for ((service, api), load) in &s.services {
            let _ = writeln!(
                w,
                "  {:<44} {:>8.4} {:>8.4} {:>8.4} {:>8.4}",
                format!("{} {api}", service.name()),
                load.calls as f64 / n,
                load.billed as f64 / n,
                load.entries as f64 / n,
                load.received as f64 / n
            );
        }
        let _ = writeln!(
            w,
            "  SQS billed for the work: {:.4} requests/notification ({} idle ReceiveMessage long polls left out: \
             the pollers' cost by the second, not by the notification)",
            s.sqs_billed() as f64 / n,
            s.idle_receives()
        );
        let _ = writeln!(
            w,
            "  KMS: {:.4} calls/notification; Scheduler: {:.4} calls/notification",
            s.service_calls(Service::Kms) as f64 / n,
            s.service_calls(Service::Scheduler) as f64 / n
        );

        let l = &self.lambda;
        let _ = writeln!(w);
        let _ = writeln!(w, "Lambda (arm64, {} MB assumed)", l.memory_mb);
        let _ = writeln!(
            w,
            "  CPU time of pushgate: send {:.0} ms (202 after {:.0} ms wall), dispatch {:.0} ms ({:.0} ms wall)",
            m.cpu_send.as_secs_f64() * 1000.0,
            m.wall_send.as_secs_f64() * 1000.0,
            m.cpu_dispatch.as_secs_f64() * 1000.0,
            m.wall_dispatch.as_secs_f64() * 1000.0
        );
        let _ = writeln!(
            w,
            "  GB-s per notification from CPU time: send {:.3e} + dispatch {:.3e} = {:.3e}",
            l.send_gb_s,
            l.dispatch_gb_s,
            l.send_gb_s + l.dispatch_gb_s
        );
        let _ = writeln!(
            w,
            "  (billed duration is wall time: {:.3e} GB-s/notification at moto's wall time, an upper bound; moto, the \
             proxy's extra reads and this machine inflate both)",
            l.wall_gb_s
        );
        let _ = writeln!(
            w,
            "  invocations: {:.4}/notification (1 send + {} dispatch batches)",
            l.requests,
            s.receive_batches()
        );

        let c = &self.costs;
        let p = PRICES;
        let _ = writeln!(w);
        let _ = writeln!(w, "$ per million notifications, prices {}", p.source);
        let rows = [
            (format!("DynamoDB writes (${}/M WRU)", p.dynamo_write_million), c.dynamo_writes),
            (format!("DynamoDB reads (${}/M RRU)", p.dynamo_read_million), c.dynamo_reads),
            (format!("SQS (${:.2}/M requests)", p.sqs_million), c.sqs),
            (format!("KMS (${:.2}/M requests)", p.kms_million), c.kms),
            (format!("Scheduler (${:.2}/M invocations)", p.scheduler_million), c.scheduler),
            (format!("Lambda compute (${}/GB-s, CPU time)", p.lambda_gb_second), c.lambda_compute),
            (format!("Lambda requests (${:.2}/M)", p.lambda_million), c.lambda_requests),
        ];
        for (what, dollars) in rows {
            let _ = writeln!(w, "  {what:<48} ${dollars:>8.3}");
        }
        let _ = writeln!(w, "  {:<48} ${:>8.3}", "total (requests and compute)", c.requests_and_compute());
        let _ = writeln!(
            w,
            "  storage: {:.0} bytes/notification ({} items, {} bytes + {ITEM_OVERHEAD_BYTES} bytes/item overhead) → \
             ${:.4} per million kept {RETENTION_DAYS:.0} days (${}/GB-month)",
            self.stored_bytes_per_notification, m.stored_items, m.stored_bytes, c.storage, p.dynamo_storage_gb_month
        );
        let _ = writeln!(w);
        let _ = writeln!(
            w,
            "issue 11's \"today\" column: 8.05 WRU, 2.6 RRU, 7.0 calls per notification, busiest key 4.0 WRU/notification, \
             ≈ $5.9 per million"
        );
        out
    }
}
