//! Table tests of the exposition parser and writer: each case is an input and the
//! expected points (rendered one per line as `kind name{labels} value timestamp`) or the
//! expected error message.

use super::*;
use crate::signal::{Label, MetricKind};

const TS: i64 = 1_000;

fn render(result: Result<Vec<MetricPoint>, ParseError>) -> String {
    match result {
        Err(e) => format!("error: {e}"),
        Ok(points) => points
            .iter()
            .map(|p| {
                let labels: Vec<String> = p.labels.iter().map(|l| format!("{}={:?}", l.name, l.value)).collect();
                let mut value = String::new();
                write_float(&mut value, p.value);
                let labels = if labels.is_empty() { String::new() } else { format!("{{{}}}", labels.join(",")) };
                format!("{} {}{} {} {}", p.kind.as_str(), p.name, labels, value, p.timestamp_ms)
            })
            .collect::<Vec<_>>()
            .join("\n"),
    }
}

fn normalise_expected(expected: &str) -> String {
    expected.trim().lines().map(str::trim).collect::<Vec<_>>().join("\n")
}

#[track_caller]
fn check_format(format: Format, input: &str, expected: &str) {
    let got = render(parse(input.as_bytes(), format, TS));
    assert_eq!(got, normalise_expected(expected), "\ninput:\n{input}");
}

/// Text format 0.0.4.
#[track_caller]
fn check(input: &str, expected: &str) {
    check_format(Format::PrometheusText, input, expected);
}

/// OpenMetrics 1.0 text.
#[track_caller]
fn check_om(input: &str, expected: &str) {
    check_format(Format::OpenMetrics, input, expected);
}

#[test]
fn counters_gauges_comments_and_blank_lines() {
    check(
        "# HELP http_requests_total Requests.\n\
         # TYPE http_requests_total counter\n\
         http_requests_total{method=\"GET\",code=\"200\"} 1027 1395066363000\n\
         http_requests_total{method=\"POST\",code=\"400\"}    3 1395066363000\n\
         \n\
         # A free comment, ignored in 0.0.4.\n\
         #\n\
         # TYPE temp gauge\n\
         \ttemp  -3.5\n\
         temp{ room = \"a\" , } 21\n",
        r#"
        counter http_requests_total{code="200",method="GET"} 1027 1395066363000
        counter http_requests_total{code="400",method="POST"} 3 1395066363000
        gauge temp -3.5 1000
        gauge temp{room="a"} 21 1000
        "#,
    );
}

#[test]
fn histogram_and_summary_suffixes_and_float_label_normalisation() {
    check(
        "# TYPE rpc_seconds histogram\n\
         rpc_seconds_bucket{le=\"0.005\"} 1\n\
         rpc_seconds_bucket{le=\"1\"} 2\n\
         rpc_seconds_bucket{le=\"1e6\"} 3\n\
         rpc_seconds_bucket{le=\"+Inf\"} 4\n\
         rpc_seconds_sum 1.5\n\
         rpc_seconds_count 4\n\
         # TYPE gc summary\n\
         gc{quantile=\"0\"} 0.1\n\
         gc{quantile=\"0.50\"} 0.2\n\
         gc{quantile=\"weird\"} 0.3\n\
         gc_sum 5\n\
         gc_count 9\n\
         # TYPE plain gauge\n\
         plain{le=\"1\"} 1\n",
        r#"
        histogram rpc_seconds_bucket{le="0.005"} 1 1000
        histogram rpc_seconds_bucket{le="1.0"} 2 1000
        histogram rpc_seconds_bucket{le="1e+06"} 3 1000
        histogram rpc_seconds_bucket{le="+Inf"} 4 1000
        histogram rpc_seconds_sum 1.5 1000
        histogram rpc_seconds_count 4 1000
        summary gc{quantile="0.0"} 0.1 1000
        summary gc{quantile="0.5"} 0.2 1000
        summary gc{quantile="weird"} 0.3 1000
        summary gc_sum 5 1000
        summary gc_count 9 1000
        gauge plain{le="1"} 1 1000
        "#,
    );
}

#[test]
fn families_are_found_by_suffix_when_not_current() {
    // `a_bucket` appears after another family's TYPE line; `x_total` has no TYPE at all.
    check(
        "# TYPE a histogram\n\
         # TYPE b gauge\n\
         a_bucket{le=\"1\"} 1\n\
         b 2\n\
         a_count 1\n\
         x_total 3\n\
         x_total{k=\"v\"} 4\n\
         # TYPE c_total counter\n\
         c_total 5\n",
        r#"
        histogram a_bucket{le="1.0"} 1 1000
        gauge b 2 1000
        histogram a_count 1 1000
        untyped x_total 3 1000
        untyped x_total{k="v"} 4 1000
        counter c_total 5 1000
        "#,
    );
}

#[test]
fn label_value_escaping() {
    check(
        r#"m{a="back\\slash",b="quote\"d",c="new\nline",d="tab\t kept",e="ünï © ✓",f=""} 1"#,
        r#"untyped m{a="back\\slash",b="quote\"d",c="new\nline",d="tab\\t kept",e="ünï © ✓",f=""} 1 1000"#,
    );
    let points = parse(br#"m{a="x\\y\"z\nw"} 1"#, Format::PrometheusText, 0).unwrap();
    assert_eq!(points[0].labels, vec![Label::new("a", "x\\y\"z\nw")]);
    // A label set containing `#` and `}` inside a value is not an exemplar or an end.
    check(r#"m{a="} # {b=\"c\"} 1"} 2 # {t="1"} 3"#, r#"untyped m{a="} # {b=\"c\"} 1"} 2 1000"#);
}

#[test]
fn special_values_and_timestamps() {
    check(
        "v NaN\nv +Inf\nv -Inf\nv -0\nv 1e3\nv .5\nv 1.5E-3\nv +7\nv 123456789012345678901234567890\nv 1 -5\nv 2 0\n",
        r#"
        untyped v NaN 1000
        untyped v +Inf 1000
        untyped v -Inf 1000
        untyped v -0 1000
        untyped v 1000 1000
        untyped v 0.5 1000
        untyped v 0.0015 1000
        untyped v 7 1000
        untyped v 1.2345678901234568e+29 1000
        untyped v 1 -5
        untyped v 2 0
        "#,
    );
    let p = parse(b"v nan\nv inf\n", Format::PrometheusText, 0).unwrap();
    assert!(p[0].value.is_nan() && !is_stale_nan(p[0].value));
    assert_eq!(p[1].value, f64::INFINITY);
}

#[test]
fn exemplars_are_ignored() {
    check(
        "# TYPE h histogram\nh_bucket{le=\"0.1\"} 8 # {trace_id=\"abc\"} 0.05 123.4\nh_count 8 5000 # {} 1\n",
        r#"
        histogram h_bucket{le="0.1"} 8 1000
        histogram h_count 8 5000
        "#,
    );
}

#[test]
fn text_errors_name_line_and_column() {
    let cases: &[(&str, &str)] = &[
        ("0abc 1", "line 1, column 1: invalid metric name"),
        ("ok 1\nfoo-bar 1", "line 2, column 4: invalid metric name"),
        ("{a=\"b\"} 1", "line 1, column 1: invalid metric name"),
        ("foo{0a=\"b\"} 1", "line 1, column 5: invalid label name in a sample of foo"),
        ("foo{a-b=\"c\"} 1", "line 1, column 6: invalid label name in a sample of foo"),
        ("foo{,} 1", "line 1, column 5: invalid label name in a sample of foo"),
        ("foo{a=\"1\",b=\"2\",a=\"3\"} 1", "line 1, column 17: duplicate label name a in a sample of foo"),
        ("foo{b=\"1\",a=\"2\",b=\"3\"} 1", "line 1, column 17: duplicate label name b in a sample of foo"),
        ("foo{__name__=\"x\"} 1", "line 1, column 5: reserved label name __name__ in a sample of foo"),
        ("foo{a \"b\"} 1", "line 1, column 7: expected '=' after label name a"),
        ("foo{a=b} 1", "line 1, column 7: expected '\"' to open the value of label a"),
        ("foo{a=\"SECRET-VALUE} 1", "line 1, column 7: unterminated value of label a"),
        ("foo{a=\"x\\", "line 1, column 7: unterminated value of label a"),
        ("foo{a=\"x\" b=\"y\"} 1", "line 1, column 11: expected ',' or '}' after a label value"),
        ("foo{a=\"x\",", "line 1, column 11: unterminated label set"),
        ("foo{a=\"x\"}1", "line 1, column 11: unexpected character after the metric name or labels"),
        ("foo", "line 1, column 4: missing sample value"),
        ("foo{} ", "line 1, column 7: missing sample value"),
        ("foo 1,5", "line 1, column 5: invalid sample value"),
        ("foo 0x10", "line 1, column 5: invalid sample value"),
        ("foo 1 1.5", "line 1, column 7: invalid timestamp"),
        ("foo 1 99999999999999999999", "line 1, column 7: invalid timestamp"),
        ("foo 1 2 3", "line 1, column 9: unexpected text after the sample"),
        ("# TYPE", "line 1, column 7: missing metric name in a # TYPE line"),
        ("# HELP 9x text", "line 1, column 8: invalid metric name"),
        ("# TYPE foo", "line 1, column 11: missing type in the # TYPE line of foo"),
        ("# TYPE foo countr", "line 1, column 12: unknown type in the # TYPE line of foo"),
        ("# TYPE foo info", "line 1, column 12: unknown type in the # TYPE line of foo"),
        ("# TYPE foo gauge extra", "line 1, column 18: unexpected text after the sample"),
    ];
    for (input, expected) in cases {
        check(input, &format!("error: {expected}"));
    }
}

#[test]
fn errors_never_echo_label_values_or_free_text() {
    for input in [
        "foo{a=\"SECRET-VALUE} 1",
        "foo{a=\"SECRET-VALUE\" b=\"c\"} 1",
        "foo{a=\"SECRET-VALUE\"} SECRET-VALUE",
        "foo{a=\"SECRET-VALUE\"} 1 SECRET-VALUE",
        "SECRET-VALUE 1",
        "# TYPE foo SECRET-VALUE",
    ] {
        let e = parse(input.as_bytes(), Format::PrometheusText, 0).unwrap_err();
        assert!(!e.to_string().contains("SECRET"), "{e}");
    }
}

#[test]
fn invalid_utf8_label_value_is_an_error() {
    let e = parse(b"foo{a=\"\xff\xfe\"} 1", Format::PrometheusText, 0).unwrap_err();
    assert_eq!(e.to_string(), "line 1, column 8: value of label a is not valid UTF-8");
    let e = parse(b"ok 1\nfoo{a=\"\\\\\xc3\"} 1", Format::PrometheusText, 0).unwrap_err();
    assert_eq!((e.line, e.column), (2, 8));
    // Bytes that are not UTF-8 in a comment or HELP text do not matter.
    assert_eq!(parse(b"# HELP foo \xff\n# \xfe\nfoo 1", Format::PrometheusText, 0).unwrap().len(), 1);
}

#[test]
fn text_type_lines() {
    // A repeated TYPE is allowed in 0.0.4 (the last wins), "unknown" is accepted too.
    check(
        "# TYPE a counter\n# TYPE a gauge\na 1\n# TYPE b unknown\nb 2\n#TYPE c gauge\nc 3\n",
        r#"
        gauge a 1 1000
        untyped b 2 1000
        gauge c 3 1000
        "#,
    );
    // No trailing newline, CR is not whitespace.
    check("a 1", "untyped a 1 1000");
    check("a 1\r\n", "error: line 1, column 3: invalid sample value");
}

#[test]
fn empty_input_is_an_empty_scrape_in_text_but_not_in_openmetrics() {
    check("", "");
    check("\n\n  \n# only comments\n", "");
    check_om("", "error: line 1, column 1: missing # EOF at the end of the OpenMetrics exposition");
    check_om("# EOF", "");
    check_om("# EOF\n", "");
}

#[test]
fn openmetrics_families_units_and_timestamps() {
    check_om(
        "# TYPE req counter\n\
         # UNIT req \n\
         # HELP req Requests with \\\"escapes\\\".\n\
         req_total{path=\"/\"} 10 1520879607.789\n\
         req_created{path=\"/\"} 1520872607.123 1520879607.789\n\
         # TYPE lat_seconds histogram\n\
         # UNIT lat_seconds seconds\n\
         lat_seconds_bucket{le=\"0.1\"} 1 # {trace_id=\"KOO5S4vxi0o\"} 0.06 1520879607.7\n\
         lat_seconds_bucket{le=\"+Inf\"} 2\n\
         lat_seconds_sum 0.3\n\
         lat_seconds_count 2\n\
         lat_seconds_created 1520872607.123\n\
         # TYPE q gaugehistogram\n\
         q_bucket{le=\"1\"} 3\n\
         q_gsum 2\n\
         q_gcount 3\n\
         # TYPE build info\n\
         build_info{version=\"1.2\"} 1\n\
         # TYPE feature stateset\n\
         feature{feature=\"a\"} 1\n\
         feature{feature=\"b\"} 0\n\
         # TYPE other unknown\n\
         other 1 -1.5\n\
         # EOF\n",
        r#"
        counter req_total{path="/"} 10 1520879607789
        counter req_created{path="/"} 1.520872607123e+09 1520879607789
        histogram lat_seconds_bucket{le="0.1"} 1 1000
        histogram lat_seconds_bucket{le="+Inf"} 2 1000
        histogram lat_seconds_sum 0.3 1000
        histogram lat_seconds_count 2 1000
        histogram lat_seconds_created 1.520872607123e+09 1000
        gauge q_bucket{le="1"} 3 1000
        gauge q_gsum 2 1000
        gauge q_gcount 3 1000
        gauge build_info{version="1.2"} 1 1000
        gauge feature{feature="a"} 1 1000
        gauge feature{feature="b"} 0 1000
        untyped other 1 -1500
        "#,
    );
}

#[test]
fn openmetrics_errors() {
    let cases: &[(&str, &str)] = &[
        ("a 1\n", "line 2, column 1: missing # EOF at the end of the OpenMetrics exposition"),
        ("a 1\n# EOF\n\n", "line 3, column 1: content after # EOF"),
        ("# EOF\na 1\n", "line 2, column 1: content after # EOF"),
        ("a 1\n\na 2\n# EOF\n", "line 2, column 1: blank line (not allowed in OpenMetrics)"),
        (
            "# free comment\n# EOF\n",
            "line 1, column 3: invalid comment line (OpenMetrics allows only # HELP, # TYPE, # UNIT and # EOF)",
        ),
        (
            "#TYPE a gauge\n# EOF\n",
            "line 1, column 1: invalid comment line (OpenMetrics allows only # HELP, # TYPE, # UNIT and # EOF)",
        ),
        ("# TYPE a gauge\n# TYPE a counter\n# EOF\n", "line 2, column 8: second # TYPE line for a"),
        ("# UNIT a_bytes seconds\n# EOF\n", "line 1, column 16: unit is not a suffix of the metric name a_bytes"),
        ("# UNIT seconds seconds\n# EOF\n", "line 1, column 16: unit is not a suffix of the metric name seconds"),
        ("a 1 NaN\n# EOF\n", "line 1, column 5: invalid timestamp"),
        ("a 1 # {x=\"y\"}\n# EOF\n", "line 1, column 14: invalid exemplar"),
        ("a 1 # x\n# EOF\n", "line 1, column 7: invalid exemplar"),
        ("a 1 # {x=\"y\"} 1 2 3\n# EOF\n", "line 1, column 19: invalid exemplar"),
        (" a 1\n# EOF\n", "line 1, column 1: invalid metric name"),
    ];
    for (input, expected) in cases {
        check_om(input, &format!("error: {expected}"));
    }
}

#[test]
fn content_type_picks_the_format() {
    assert_eq!(
        Format::from_content_type(Some("application/openmetrics-text; version=1.0.0; charset=utf-8")),
        Format::OpenMetrics
    );
    assert_eq!(Format::from_content_type(Some("Application/OpenMetrics-Text")), Format::OpenMetrics);
    assert_eq!(Format::from_content_type(Some("text/plain; version=0.0.4; charset=utf-8")), Format::PrometheusText);
    assert_eq!(Format::from_content_type(Some("text/html")), Format::PrometheusText);
    assert_eq!(Format::from_content_type(None), Format::PrometheusText);
}

#[test]
fn floats_are_formatted_like_go() {
    let cases: &[(f64, &str, &str)] = &[
        (0.0, "0", "0.0"),
        (-0.0, "-0", "-0.0"),
        (1.0, "1", "1.0"),
        (-1.0, "-1", "-1.0"),
        (0.005, "0.005", "0.005"),
        (0.0001, "0.0001", "0.0001"),
        (0.00001, "1e-05", "1e-05"),
        (123.456, "123.456", "123.456"),
        (100000.0, "100000", "100000.0"),
        (999999.0, "999999", "999999.0"),
        (1e6, "1e+06", "1e+06"),
        (1234567.0, "1.234567e+06", "1.234567e+06"),
        (16562487296.0, "1.6562487296e+10", "1.6562487296e+10"),
        (1e21, "1e+21", "1e+21"),
        (-2.5e-7, "-2.5e-07", "-2.5e-07"),
        (123456.5, "123456.5", "123456.5"),
        (5e-324, "5e-324", "5e-324"),
        (f64::MAX, "1.7976931348623157e+308", "1.7976931348623157e+308"),
        (f64::NAN, "NaN", "NaN"),
        (f64::INFINITY, "+Inf", "+Inf"),
        (f64::NEG_INFINITY, "-Inf", "-Inf"),
    ];
    for &(f, go, om) in cases {
        let mut s = String::new();
        write_float(&mut s, f);
        assert_eq!(s, go, "write_float({f:e})");
        let mut s = String::new();
        write_openmetrics_float(&mut s, f);
        assert_eq!(s, om, "write_openmetrics_float({f:e})");
        if f.is_finite() {
            assert_eq!(go.parse::<f64>().unwrap().to_bits(), f.to_bits(), "{go} must round-trip");
        }
    }
}

#[test]
fn encode_groups_families_and_escapes() {
    let points = vec![
        MetricPoint::new("rpc_seconds_bucket", vec![Label::new("le", "0.5")], MetricKind::Histogram, 1.0, 10),
        MetricPoint::new("up", vec![Label::new("job", "a\"b\\c\nd")], MetricKind::Gauge, 1.0, 10),
        MetricPoint::new("rpc_seconds_bucket", vec![Label::new("le", "+Inf")], MetricKind::Histogram, 2.0, 10),
        MetricPoint::new("rpc_seconds_sum", vec![], MetricKind::Histogram, 1.5e6, 10),
        MetricPoint::new("rpc_seconds_count", vec![], MetricKind::Histogram, 2.0, 10),
        MetricPoint::new(
            "x_total",
            vec![Label::new("b", "2"), Label::new("a", "1")],
            MetricKind::Counter,
            f64::NAN,
            -3,
        ),
        MetricPoint::new("mystery", vec![], MetricKind::Unknown, f64::NEG_INFINITY, 0),
    ];
    let text = encode_text(&points);
    assert_eq!(
        text,
        "# TYPE rpc_seconds histogram\n\
         rpc_seconds_bucket{le=\"0.5\"} 1 10\n\
         rpc_seconds_bucket{le=\"+Inf\"} 2 10\n\
         rpc_seconds_sum 1.5e+06 10\n\
         rpc_seconds_count 2 10\n\
         # TYPE up gauge\n\
         up{job=\"a\\\"b\\\\c\\nd\"} 1 10\n\
         # TYPE x_total counter\n\
         x_total{a=\"1\",b=\"2\"} NaN -3\n\
         # TYPE mystery untyped\n\
         mystery -Inf 0\n"
    );
    let back = parse(text.as_bytes(), Format::PrometheusText, 0).unwrap();
    let mut expected = points.clone();
    expected.sort_by_key(|p| ["rpc_seconds", "up", "x_total", "mystery"].iter().position(|f| p.name.starts_with(f)));
    assert_eq!(back.len(), expected.len());
    for (a, b) in back.iter().zip(&expected) {
        assert_eq!((&a.name, &a.labels, a.kind, a.timestamp_ms), (&b.name, &b.labels, b.kind, b.timestamp_ms));
        assert!(a.value == b.value || (a.value.is_nan() && b.value.is_nan()));
    }
}

#[test]
fn parser_reuse_and_truncation_on_error() {
    let mut parser = Parser::new(Format::PrometheusText);
    let mut out = Vec::new();
    parser.parse_into(b"a 1\nb{x=\"1\"} 2\n", 5, &mut out).unwrap();
    assert_eq!(out.len(), 2);
    assert!(parser.parse_into(b"c 1\nd{", 5, &mut out).is_err());
    assert_eq!(out.len(), 2, "a failed parse appends nothing");
    parser.reserve_extra_labels(2);
    parser.set_format(Format::OpenMetrics);
    parser.parse_into(b"e{y=\"2\"} 3 1.5\n# EOF\n", 5, &mut out).unwrap();
    assert_eq!(out[2].timestamp_ms, 1500);
    assert!(out[2].labels.capacity() >= 3);
}

#[test]
fn stale_marker() {
    assert!(is_stale_nan(stale_nan()));
    assert!(stale_nan().is_nan());
    assert!(!is_stale_nan(f64::NAN));
}
