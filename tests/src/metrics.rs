//! Reading a node's `/metrics` (Prometheus text) in tests.

use std::collections::HashMap;

/// One sample: metric name (with its `_total`/`_count` suffix), labels, value.
pub type Sample = (String, HashMap<String, String>, f64);

/// The counter, gauge and untyped samples of `text`; fails the test when it does not parse.
pub fn parse(text: &str) -> Vec<Sample> {
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
        .unwrap_or_else(|e| panic!("/metrics is not Prometheus text ({e}):\n{text}"));
    scrape
        .samples
        .into_iter()
        .filter_map(|sample| {
            let value = match sample.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => return None,
            };
            let labels = sample
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            Some((sample.metric, labels, value))
        })
        .collect()
}

/// The sum of samples named `name` whose labels include every pair of `labels`.
pub fn sum(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|(n, l, _)| {
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, _, v)| v)
        .sum()
}

/// Scrapes `node`'s `/metrics`: the text and its samples. Fails the test unless the node answers
/// 200 with Prometheus text that holds samples.
pub fn scrape(node: &crate::Node) -> (String, Vec<Sample>) {
    let (status, headers, text) = crate::request(node, "GET", "/metrics", &[], None);
    assert_eq!(status, 200, "{text}");
    assert!(
        headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t.starts_with("text/plain")),
        "{headers:?}"
    );
    let samples = parse(&text);
    assert!(!samples.is_empty(), "{text}");
    (text, samples)
}
