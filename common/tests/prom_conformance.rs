//! Conformance of `headroom_common::prom` with the Prometheus text exposition
//! format 0.0.4: the cases real exporters produce, the upstream example, and
//! malformed input that must be reported with its line number.

use std::borrow::Cow;

use headroom_common::prom::{self, Exposition, MetricType, ParseError, Sample};
use proptest::prelude::*;

fn parse(text: &str) -> Exposition<'_> {
    prom::parse(text).unwrap_or_else(|e| panic!("{e}\ninput:\n{text}"))
}

fn only_sample(text: &str) -> Sample<'_> {
    let mut e = parse(text);
    assert_eq!(e.samples.len(), 1, "samples in {text:?}: {:?}", e.samples);
    e.samples.remove(0)
}

fn labels<'s>(s: &'s Sample<'_>) -> Vec<(&'s str, &'s str)> {
    s.labels.iter().map(|(k, v)| (*k, v.as_ref())).collect()
}

fn error(text: &str) -> ParseError {
    match prom::parse(text) {
        Ok(e) => panic!("{text:?} parsed as {e:?}, expected an error"),
        Err(e) => e,
    }
}

// ---------------------------------------------------------------- label values

#[test]
fn escapes_in_label_values_are_decoded() {
    let s = only_sample(r#"foo{quote="a\"b",backslash="C:\\DIR\\",newline="one\ntwo"} 1"#);
    assert_eq!(
        labels(&s),
        [
            ("quote", "a\"b"),
            ("backslash", "C:\\DIR\\"),
            ("newline", "one\ntwo")
        ]
    );
}

#[test]
fn unescaped_values_borrow_from_the_input() {
    let s = only_sample(r#"foo{a="plain",b="esc\\aped"} 1"#);
    assert!(matches!(s.labels[0].1, Cow::Borrowed("plain")));
    assert!(matches!(s.labels[1].1, Cow::Owned(ref v) if v == "esc\\aped"));
}

#[test]
fn unknown_escapes_are_kept_verbatim() {
    // Not produced by conforming exporters; the Prometheus server keeps them as
    // written, and so do we rather than failing the whole scrape.
    let s = only_sample(r#"foo{a="\w+\d"} 1"#);
    assert_eq!(s.label("a"), Some(r"\w+\d"));
}

#[test]
fn label_values_may_contain_comma_equals_and_braces() {
    let s = only_sample(r##"foo{a="x,y",b="k=v",c="}",d="{",e="#",f="a=\"1\",b=2"} 7"##);
    assert_eq!(
        labels(&s),
        [
            ("a", "x,y"),
            ("b", "k=v"),
            ("c", "}"),
            ("d", "{"),
            ("e", "#"),
            ("f", "a=\"1\",b=2")
        ]
    );
    assert_eq!(s.value, 7.0);
}

#[test]
fn label_values_may_be_empty_or_unicode() {
    let s = only_sample("foo{a=\"\",b=\"grüße 🚀\"} 1");
    assert_eq!(labels(&s), [("a", ""), ("b", "grüße 🚀")]);
}

#[test]
fn jupyter_server_handler_label_with_backslashes_and_parentheses() {
    // jupyter_server's http_request_duration_seconds: the handler label is a
    // tornado route regex, escaped by the Python client.
    let text = concat!(
        "# HELP http_request_duration_seconds duration in seconds for all HTTP requests\n",
        "# TYPE http_request_duration_seconds histogram\n",
        r#"http_request_duration_seconds_bucket{handler="/api/kernels/(?P<kernel_id>\\w+-\\w+-\\w+-\\w+-\\w+)",le="0.005",method="GET",status_code="200"} 3.0"#,
        "\n",
        r#"http_request_duration_seconds_count{handler="/api/kernels/(?P<kernel_id>\\w+-\\w+-\\w+-\\w+-\\w+)",method="GET",status_code="200"} 5.0"#,
        "\n",
    );
    let e = parse(text);
    assert_eq!(e.samples.len(), 2);
    let bucket = &e.samples[0];
    assert_eq!(bucket.name, "http_request_duration_seconds_bucket");
    assert_eq!(
        bucket.label("handler"),
        Some(r"/api/kernels/(?P<kernel_id>\w+-\w+-\w+-\w+-\w+)")
    );
    assert_eq!(bucket.label("le"), Some("0.005"));
    assert_eq!(bucket.label("method"), Some("GET"));
    assert_eq!(bucket.label("status_code"), Some("200"));
    assert_eq!(bucket.value, 3.0);
    assert_eq!(e.samples[1].value, 5.0);
    let family = e.family_of("http_request_duration_seconds_count").unwrap();
    assert_eq!(family.metric_type, MetricType::Histogram);
}

// ------------------------------------------------------------- names and sets

#[test]
fn empty_label_set_is_a_sample_without_labels() {
    let s = only_sample("foo{} 1");
    assert_eq!(s.name, "foo");
    assert!(s.labels.is_empty());
    let s = only_sample("foo{ } 2 5");
    assert!(s.labels.is_empty());
    assert_eq!((s.value, s.timestamp_ms), (2.0, Some(5)));
}

#[test]
fn trailing_comma_in_label_set() {
    assert_eq!(labels(&only_sample(r#"foo{a="1",} 1"#)), [("a", "1")]);
    assert_eq!(
        labels(&only_sample(r#"foo{a="1", b="2" , } 1"#)),
        [("a", "1"), ("b", "2")]
    );
}

#[test]
fn blanks_after_commas_do_not_leak_into_label_names() {
    let s = only_sample(r#"foo{a="1", b="2",	c="3"} 1"#);
    assert_eq!(labels(&s), [("a", "1"), ("b", "2"), ("c", "3")]);
    assert_eq!(s.label("b"), Some("2"));
}

#[test]
fn metric_names_with_colons() {
    let e = parse("job:request_rate:5m 10\n:leading_colon 1\nns:sub{a=\"b\"} 2\n");
    let names: Vec<_> = e.samples.iter().map(|s| s.name).collect();
    assert_eq!(names, ["job:request_rate:5m", ":leading_colon", "ns:sub"]);
}

// ------------------------------------------------------------- values and time

#[test]
fn value_forms() {
    let cases: &[(&str, f64)] = &[
        ("1", 1.0),
        ("-1", -1.0),
        ("+3", 3.0),
        ("1.5", 1.5),
        ("1.458255915e9", 1.458255915e9),
        ("1.7560473e+07", 1.7560473e7),
        ("2E-3", 2e-3),
        (".5", 0.5),
        ("0", 0.0),
        ("-0", -0.0),
        ("+Inf", f64::INFINITY),
        ("-Inf", f64::NEG_INFINITY),
        ("Inf", f64::INFINITY),
    ];
    for &(token, want) in cases {
        let line = format!("foo {token}");
        assert_eq!(only_sample(&line).value, want, "{token}");
    }
    assert!(only_sample("foo NaN").value.is_nan());
    assert!(only_sample("foo nan").value.is_nan());
}

#[test]
fn optional_timestamps_including_negative() {
    assert_eq!(only_sample("foo 1").timestamp_ms, None);
    assert_eq!(
        only_sample("foo 1 1395066363000").timestamp_ms,
        Some(1_395_066_363_000)
    );
    assert_eq!(only_sample("foo 1 -3982045").timestamp_ms, Some(-3_982_045));
}

// ------------------------------------------------------------------ whitespace

#[test]
fn whitespace_tolerance() {
    let text =
        "\n   \n\t# a comment\n#\n  foo 1\nbar\t2\t3\nbaz {a = \"x\" } 4   \nqux{a=\"y\"}5\n\n";
    let e = parse(text);
    let got: Vec<_> = e
        .samples
        .iter()
        .map(|s| (s.name, s.label("a"), s.value, s.timestamp_ms))
        .collect();
    assert_eq!(
        got,
        [
            ("foo", None, 1.0, None),
            ("bar", None, 2.0, Some(3)),
            ("baz", Some("x"), 4.0, None),
            ("qux", Some("y"), 5.0, None),
        ]
    );
}

#[test]
fn last_line_may_lack_a_newline() {
    let e = parse("a 1\nb 2");
    assert_eq!(e.samples.len(), 2);
    assert_eq!(e.samples[1].name, "b");
}

#[test]
fn empty_input_is_an_empty_exposition() {
    assert_eq!(parse(""), Exposition::default());
    assert_eq!(parse("\n\n# just comments\n"), Exposition::default());
}

// --------------------------------------------------------------- HELP and TYPE

#[test]
fn help_and_type_lines() {
    let text = concat!(
        "# HELP a_total Counts \\\\ things\\nacross lines, \"quoted\" \\x\n",
        "# TYPE a_total counter\n",
        "# TYPE g gauge\n",
        "# TYPE h HISTOGRAM\n",
        "# TYPE s summary\n",
        "# TYPE u untyped\n",
        "# HELP only_help   leading blanks dropped, trailing kept  \n",
        "#HELP tight no space after the hash\n",
        "# HELP empty_help\n",
        "# some other comment TYPE x counter\n",
    );
    let e = parse(text);
    let fams: Vec<_> = e
        .families
        .iter()
        .map(|f| (f.name, f.metric_type, f.help.as_deref()))
        .collect();
    assert_eq!(
        fams,
        [
            (
                "a_total",
                MetricType::Counter,
                Some("Counts \\ things\nacross lines, \"quoted\" \\x")
            ),
            ("g", MetricType::Gauge, None),
            ("h", MetricType::Histogram, None),
            ("s", MetricType::Summary, None),
            ("u", MetricType::Untyped, None),
            (
                "only_help",
                MetricType::Untyped,
                Some("leading blanks dropped, trailing kept  ")
            ),
            (
                "tight",
                MetricType::Untyped,
                Some("no space after the hash")
            ),
            ("empty_help", MetricType::Untyped, Some("")),
        ]
    );
}

/// The example from the upstream exposition-format documentation.
const UPSTREAM_EXAMPLE: &str = r#"# HELP http_requests_total The total number of HTTP requests.
# TYPE http_requests_total counter
http_requests_total{method="post",code="200"} 1027 1395066363000
http_requests_total{method="post",code="400"}    3 1395066363000

# Escaping in label values:
msdos_file_access_time_seconds{path="C:\\DIR\\FILE.TXT",error="Cannot find file:\n\"FILE.TXT\""} 1.458255915e9

# Minimalistic line:
metric_without_timestamp_and_labels 12.47

# A weird metric from before the epoch:
something_weird{problem="division by zero"} +Inf -3982045

# A histogram, which has a pretty complex representation in the text format:
# HELP http_request_duration_seconds A histogram of the request duration.
# TYPE http_request_duration_seconds histogram
http_request_duration_seconds_bucket{le="0.05"} 24054
http_request_duration_seconds_bucket{le="0.1"} 33444
http_request_duration_seconds_bucket{le="0.2"} 100392
http_request_duration_seconds_bucket{le="0.5"} 129389
http_request_duration_seconds_bucket{le="1"} 133988
http_request_duration_seconds_bucket{le="+Inf"} 144320
http_request_duration_seconds_sum 53423
http_request_duration_seconds_count 144320

# Finally a summary, which has a complex representation, too:
# HELP rpc_duration_seconds A summary of the RPC duration in seconds.
# TYPE rpc_duration_seconds summary
rpc_duration_seconds{quantile="0.01"} 3102
rpc_duration_seconds{quantile="0.05"} 3272
rpc_duration_seconds{quantile="0.5"} 4773
rpc_duration_seconds{quantile="0.9"} 9001
rpc_duration_seconds{quantile="0.99"} 76656
rpc_duration_seconds_sum 1.7560473e+07
rpc_duration_seconds_count 2693
"#;

#[test]
fn upstream_exposition_example() {
    let e = parse(UPSTREAM_EXAMPLE);
    assert_eq!(e.samples.len(), 20);

    let fams: Vec<_> = e.families.iter().map(|f| (f.name, f.metric_type)).collect();
    assert_eq!(
        fams,
        [
            ("http_requests_total", MetricType::Counter),
            ("http_request_duration_seconds", MetricType::Histogram),
            ("rpc_duration_seconds", MetricType::Summary),
        ]
    );
    assert_eq!(
        e.family("rpc_duration_seconds").unwrap().help.as_deref(),
        Some("A summary of the RPC duration in seconds.")
    );

    let s = &e.samples[1];
    assert_eq!(labels(s), [("method", "post"), ("code", "400")]);
    assert_eq!((s.value, s.timestamp_ms), (3.0, Some(1_395_066_363_000)));

    let msdos = &e.samples[2];
    assert_eq!(msdos.label("path"), Some(r"C:\DIR\FILE.TXT"));
    assert_eq!(
        msdos.label("error"),
        Some("Cannot find file:\n\"FILE.TXT\"")
    );
    assert_eq!(msdos.value, 1.458255915e9);

    assert_eq!(e.samples[3].name, "metric_without_timestamp_and_labels");
    assert_eq!(e.samples[3].value, 12.47);
    assert_eq!(e.samples[4].value, f64::INFINITY);
    assert_eq!(e.samples[4].timestamp_ms, Some(-3_982_045));

    // Histogram: buckets in order, +Inf bucket, then _sum and _count, all
    // typed through their family.
    let buckets: Vec<_> = e
        .samples_named("http_request_duration_seconds_bucket")
        .map(|s| (s.label("le").unwrap(), s.value))
        .collect();
    assert_eq!(
        buckets,
        [
            ("0.05", 24054.0),
            ("0.1", 33444.0),
            ("0.2", 100392.0),
            ("0.5", 129389.0),
            ("1", 133988.0),
            ("+Inf", 144320.0)
        ]
    );
    assert_eq!(e.samples[11].name, "http_request_duration_seconds_sum");
    assert_eq!(e.samples[11].value, 53423.0);
    assert_eq!(e.samples[12].name, "http_request_duration_seconds_count");
    for name in [
        "http_request_duration_seconds_sum",
        "http_request_duration_seconds_count",
    ] {
        assert_eq!(
            e.family_of(name).unwrap().metric_type,
            MetricType::Histogram
        );
    }

    let quantiles: Vec<_> = e
        .samples_named("rpc_duration_seconds")
        .map(|s| s.label("quantile").unwrap())
        .collect();
    assert_eq!(quantiles, ["0.01", "0.05", "0.5", "0.9", "0.99"]);
    let sum = e.samples_named("rpc_duration_seconds_sum").next().unwrap();
    assert_eq!(sum.value, 1.7560473e7);
    assert_eq!(
        e.family_of("rpc_duration_seconds_count")
            .unwrap()
            .metric_type,
        MetricType::Summary
    );
}

#[test]
fn summary_with_nan_quantiles() {
    // Go runtime summaries report NaN quantiles before any observation.
    let e = parse(
        "# TYPE go_gc_duration_seconds summary\ngo_gc_duration_seconds{quantile=\"0\"} NaN\ngo_gc_duration_seconds_sum 0\ngo_gc_duration_seconds_count 0\n",
    );
    assert!(e.samples[0].value.is_nan());
    assert_eq!(e.samples[2].value, 0.0);
}

// ---------------------------------------------------------------------- errors

#[test]
fn garbage_lines_are_errors_with_their_line_number() {
    let cases: &[(&str, usize)] = &[
        ("ok 1\nthis is garbage\nok 2\n", 2),
        ("ok 1\n\n\nfoo{a=\"b\" 1\n", 4),
        ("foo{a=b} 1", 1),
        ("foo{a=\"unterminated} 1", 1),
        ("foo{a=\"b\"}", 1),
        ("foo", 1),
        ("foo bar", 1),
        ("foo 1 2 3", 1),
        ("foo 1 1.5", 1),
        ("foo 1 12abc", 1),
        ("foo 0x10", 1),
        ("{a=\"b\"} 1", 1),
        ("1foo 1", 1),
        ("foo-bar 1", 1),
        ("foo.bar 1", 1),
        ("foo=2", 1),
        ("foo{,} 1", 1),
        ("foo{a=\"1\",,} 1", 1),
        ("foo{1a=\"1\"} 1", 1),
        ("foo{a:b=\"1\"} 1", 1),
        ("foo{a=\"1\" b=\"2\"} 1", 1),
        ("foo{a=\"1\"}} 1", 1),
        ("foo{__name__=\"x\"} 1", 1),
        ("foo{a=\"1\",a=\"2\"} 1", 1),
        ("ok 1\n# TYPE foo blah\n", 2),
        ("# TYPE foo\n", 1),
        ("# TYPE foo counter extra\n", 1),
        ("# HELP\n", 1),
        ("# HELP 9bad text\n", 1),
        ("# TYPE foo.bar counter\n", 1),
        ("foo 1\r\n", 1),
    ];
    for &(text, line) in cases {
        let err = error(text);
        assert_eq!(err.line, line, "{text:?}: {err}");
        assert!(!err.message.is_empty());
    }
}

#[test]
fn error_display_names_the_line() {
    let err = error("a 1\nb 2\nc{x=} 3\n");
    assert_eq!(err.line, 3);
    let shown = err.to_string();
    assert!(shown.starts_with("line 3: "), "{shown}");
    assert!(shown.contains("'\"'"), "{shown}");
}

// ------------------------------------------------------------------ round trip

#[derive(Debug, Clone)]
struct Owned {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
    timestamp_ms: Option<i64>,
}

fn escape_label_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

fn render_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        // Rust's shortest round-trip form; alternate with exponent form.
        if v.abs() > 1e6 {
            format!("{v:e}")
        } else {
            format!("{v}")
        }
    }
}

fn render(samples: &[Owned], help: &str, blank: &str, trailing_comma: bool) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "# HELP {} {}\n",
        samples[0].name,
        escape_help(help)
    ));
    out.push_str(&format!("# TYPE {} gauge\n", samples[0].name));
    for s in samples {
        out.push_str(&s.name);
        if !s.labels.is_empty() || trailing_comma {
            out.push('{');
            for (i, (k, v)) in s.labels.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                    out.push_str(blank);
                }
                out.push_str(&format!("{k}{blank}={blank}\"{}\"", escape_label_value(v)));
            }
            if trailing_comma && !s.labels.is_empty() {
                out.push(',');
            }
            out.push('}');
        }
        out.push(' ');
        out.push_str(blank);
        out.push_str(&render_value(s.value));
        if let Some(ts) = s.timestamp_ms {
            out.push_str(&format!(" {blank}{ts}"));
        }
        out.push('\n');
    }
    out
}

fn arb_value() -> impl Strategy<Value = f64> {
    prop_oneof![
        8 => any::<f64>(),
        1 => Just(f64::INFINITY),
        1 => Just(f64::NEG_INFINITY),
        1 => Just(f64::NAN),
        2 => (-1_000_000i64..1_000_000).prop_map(|i| i as f64),
    ]
}

fn arb_sample() -> impl Strategy<Value = Owned> {
    (
        "[a-zA-Z_:][a-zA-Z0-9_:]{0,24}",
        proptest::collection::vec(("[a-zA-Z_][a-zA-Z0-9_]{0,12}", any::<String>()), 0..6),
        arb_value(),
        proptest::option::of(any::<i64>()),
    )
        .prop_map(|(name, raw_labels, value, timestamp_ms)| {
            let mut labels: Vec<(String, String)> = Vec::new();
            for (k, v) in raw_labels {
                if k != "__name__" && !labels.iter().any(|(seen, _)| *seen == k) {
                    labels.push((k, v));
                }
            }
            Owned {
                name,
                labels,
                value,
                timestamp_ms,
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn rendered_samples_parse_back(
        samples in proptest::collection::vec(arb_sample(), 1..8),
        help in any::<String>(),
        blank in prop_oneof![Just(""), Just(" "), Just("\t"), Just("  \t")],
        trailing_comma in any::<bool>(),
    ) {
        let text = render(&samples, &help, blank, trailing_comma);
        let parsed = prom::parse(&text).map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        prop_assert_eq!(parsed.samples.len(), samples.len());
        for (got, want) in parsed.samples.iter().zip(&samples) {
            prop_assert_eq!(got.name, want.name.as_str());
            let got_labels: Vec<(&str, &str)> = got.labels.iter().map(|(k, v)| (*k, v.as_ref())).collect();
            let want_labels: Vec<(&str, &str)> = want.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            prop_assert_eq!(got_labels, want_labels);
            if want.value.is_nan() {
                prop_assert!(got.value.is_nan());
            } else {
                prop_assert_eq!(got.value.to_bits(), want.value.to_bits(), "value {} from {:?}", want.value, text);
            }
            prop_assert_eq!(got.timestamp_ms, want.timestamp_ms);
        }
        let family = parsed.family(&samples[0].name).expect("family from HELP/TYPE");
        prop_assert_eq!(family.metric_type, MetricType::Gauge);
        // HELP text: leading blanks are separators, not content.
        prop_assert_eq!(family.help.as_deref(), Some(help.trim_start_matches([' ', '\t'])));
    }

    #[test]
    fn arbitrary_input_never_panics(text in any::<String>()) {
        if let Ok(e) = prom::parse(&text) {
            for s in &e.samples {
                prop_assert!(!s.name.is_empty());
            }
        }
    }
}
