//! The labelled PHI corpus generator, shared by the corpus test, the property and fuzz
//! tests, the redaction bench and the `redact_corpus` example (included with `#[path]`).
//!
//! Seeded (`StdRng`), so a seed always gives the same lines. Each line is plain text or a
//! compact JSON object, shaped like the platform's logs, and carries labels: which spans
//! (text lines: byte offsets) or values (JSON lines) are PHI, and which detector should
//! find them. Every detector appears in every format variant it supports, and clean
//! lines are built from the false-positive traps: RFC 3339 timestamps, durations, trace
//! and span ids, UUIDs, versions (incl. four-part), status codes, ports, byte counts,
//! epoch seconds, pod names, record ids, private IPs and capitalised log phrases.

#![allow(dead_code)]

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// One PHI item in a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Phi {
    /// Detector name (`ssn`, `name`, ...).
    pub det: &'static str,
    /// The PHI text as it appears in the line (JSON: the decoded value).
    pub value: String,
    /// Byte range in a text line; `None` in JSON lines.
    pub span: Option<(usize, usize)>,
}

/// One generated line.
#[derive(Debug, Clone)]
pub struct Labelled {
    /// The line (no newline).
    pub line: String,
    /// Whether it is a JSON object.
    pub json: bool,
    /// Its PHI.
    pub phi: Vec<Phi>,
}

/// Every detector the corpus covers.
pub const DETECTORS: [&str; 15] = [
    "ssn",
    "phone",
    "email",
    "date",
    "age",
    "mrn",
    "health_plan",
    "account",
    "license",
    "card",
    "ip",
    "url",
    "zip",
    "address",
    "name",
];

const MALE: &str = include_str!("../../data/names/dist.male.first");
const FEMALE: &str = include_str!("../../data/names/dist.female.first");
const LAST: &str = include_str!("../../data/names/dist.all.last");

// First names the redactor treats as common words: names built from them are generated
// with a context only.
use warden_collector::redact::names::COMMON_FIRST;

/// The corpus generator.
pub struct Gen {
    rng: StdRng,
    first: Vec<String>,
    last: Vec<String>,
}

fn title(w: &str) -> String {
    let mut s = String::with_capacity(w.len());
    for (i, c) in w.chars().enumerate() {
        s.push(if i == 0 { c.to_ascii_uppercase() } else { c.to_ascii_lowercase() });
    }
    s
}

/// Builds a text line and its spans.
struct Line {
    s: String,
    phi: Vec<Phi>,
}

impl Line {
    fn new() -> Line {
        Line { s: String::with_capacity(160), phi: Vec::new() }
    }
    fn t(&mut self, text: &str) -> &mut Line {
        self.s.push_str(text);
        self
    }
    fn p(&mut self, det: &'static str, value: &str) -> &mut Line {
        let start = self.s.len();
        self.s.push_str(value);
        self.phi.push(Phi { det, value: value.to_owned(), span: Some((start, self.s.len())) });
        self
    }
}

const STREETS: &[&str] = &[
    "Main",
    "Oak",
    "Maple",
    "Cedar",
    "Pine",
    "Elm",
    "Washington",
    "Lake",
    "Hill",
    "Park",
    "Sunset",
    "Highland",
    "Jefferson",
    "Lincoln",
    "Madison",
    "Franklin",
    "Church",
    "Spring",
    "Ridge",
    "Willow",
    "Chestnut",
    "Walnut",
    "Mill",
    "River",
    "Meadow",
    "Forest Glen",
    "Old Farm",
    "Martin Luther King",
];
const SUFFIXES: &[&str] = &[
    "St", "Street", "Ave", "Avenue", "Rd", "Road", "Blvd", "Dr", "Drive", "Ln", "Lane", "Way", "Ct", "Court", "Pl",
    "Pkwy", "Ter",
];
const CITIES: &[(&str, &str)] = &[
    ("Springfield", "IL"),
    ("Boston", "MA"),
    ("Austin", "TX"),
    ("Denver", "CO"),
    ("Portland", "OR"),
    ("Seattle", "WA"),
    ("Columbus", "OH"),
    ("Miami", "FL"),
    ("Phoenix", "AZ"),
    ("Nashville", "TN"),
    ("Richmond", "VA"),
    ("Boise", "ID"),
    ("Saint Paul", "MN"),
];
const DOMAINS: &[&str] = &[
    "gmail.com",
    "example.org",
    "mail.hospital.org",
    "yahoo.com",
    "outlook.com",
    "clinic.health",
    "uni.edu",
    "corp.example.co.uk",
];
const LEVELS: &[&str] = &["INFO", "WARN", "ERROR", "DEBUG", "info", "warning", "error"];
const LOGGERS: &[&str] =
    &["platform_api::handlers", "intake", "billing.worker", "scheduler", "auth", "fhir-sync", "notifier"];
const MONTHS: &[&str] = &[
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const MON: &[&str] = &["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
const SAFE_STATES: &[&str] =
    &["MA", "IL", "TX", "CA", "NY", "FL", "WA", "GA", "NC", "MI", "NJ", "VA", "AZ", "TN", "MN", "WI", "KY"];

impl Gen {
    /// A generator with `seed`.
    pub fn new(seed: u64) -> Gen {
        let first: Vec<String> = MALE
            .lines()
            .chain(FEMALE.lines())
            .map(str::trim)
            .filter(|w| w.len() >= 3 && !COMMON_FIRST.contains(w))
            .map(title)
            .collect();
        // The 20,000 most frequent surnames: realistic, and the long tail adds nothing.
        let last = LAST.lines().take(20_000).map(str::trim).filter(|w| w.len() >= 3).map(title).collect();
        Gen { rng: StdRng::seed_from_u64(seed), first, last }
    }

    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.rng.random_range(0..xs.len())]
    }

    fn n(&mut self, lo: u64, hi: u64) -> u64 {
        self.rng.random_range(lo..=hi)
    }

    fn chance(&mut self, p: f64) -> bool {
        self.rng.random_bool(p)
    }

    fn hex(&mut self, len: usize) -> String {
        (0..len).map(|_| char::from(b"0123456789abcdef"[self.rng.random_range(0..16)])).collect()
    }

    fn digits(&mut self, len: usize) -> String {
        (0..len).map(|_| char::from(b'0' + self.rng.random_range(0..10u8))).collect()
    }

    fn first_name(&mut self) -> String {
        self.first[self.rng.random_range(0..self.first.len())].clone()
    }

    fn last_name(&mut self) -> String {
        self.last[self.rng.random_range(0..self.last.len())].clone()
    }

    fn timestamp(&mut self) -> String {
        let (y, mo, d, h, mi, s) =
            (self.n(2023, 2025), self.n(1, 12), self.n(1, 28), self.n(0, 23), self.n(0, 59), self.n(0, 59));
        match self.n(0, 3) {
            0 => format!("{y}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z"),
            1 => format!("{y}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{:06}+00:00", self.n(0, 999_999)),
            2 => format!("{y}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02},{:03}", self.n(0, 999)),
            _ => format!("{y}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{:03}-05:00", self.n(0, 999)),
        }
    }

    fn uuid(&mut self) -> String {
        format!("{}-{}-4{}-a{}-{}", self.hex(8), self.hex(4), self.hex(3), self.hex(3), self.hex(12))
    }

    /// A clean fragment: the false-positive traps.
    fn trap(&mut self) -> String {
        match self.n(0, 27) {
            0 => format!("trace_id={} span_id={}", self.hex(32), self.hex(16)),
            1 => format!("request_id={}", self.uuid()),
            2 => format!("took {}ms", self.n(1, 99_999)),
            3 => format!("duration={}.{}s", self.n(0, 59), self.n(0, 999)),
            4 => format!(
                "status={}",
                self.pick(&["200", "201", "204", "301", "400", "401", "403", "404", "429", "500", "502", "503"])
            ),
            5 => format!("port={}", self.n(1024, 65535)),
            6 => format!("bytes={}", self.n(0, 10_000_000_000)),
            7 => format!("epoch={}", self.n(1_600_000_000, 1_800_000_000)),
            8 => format!("ts_ms={}", self.n(1_600_000_000_000, 1_800_000_000_000)),
            9 => format!("pod=platform-api-{}-{}", self.hex(9), self.hex(5)),
            10 => format!("record_id={}", self.n(1, 99_999_999)),
            11 => format!("version {}.{}.{}.{}", self.n(0, 20), self.n(0, 40), self.n(0, 200), self.n(0, 250)),
            12 => format!("v{}.{}.{}", self.n(0, 9), self.n(0, 30), self.n(0, 99)),
            13 => {
                format!("upstream=10.{}.{}.{}:{}", self.n(0, 255), self.n(0, 255), self.n(1, 254), self.n(1024, 9999))
            }
            14 => format!("node ip-10-0-{}-{}.ec2.internal", self.n(0, 255), self.n(0, 255)),
            15 => format!("GET /v1/patients/{}/encounters {}", self.n(1, 999_999), self.pick(&["200", "404", "500"])),
            16 => format!("order {} shipped", self.n(100_000_000, 999_999_999)),
            17 => self
                .pick(&[
                    "Started Worker Pool",
                    "Health Check OK",
                    "Will retry in 5s",
                    "May Post results later",
                    "Patient Portal ready",
                    "Cache Warmup Complete",
                    "Long Poll timeout",
                    "Brown field migration done",
                ])
                .to_owned(),
            18 => format!("at {:02}:{:02}:{:02}.{:03}", self.n(0, 23), self.n(0, 59), self.n(0, 59), self.n(0, 999)),
            19 => format!("build {}.{}.{}-{}.el8", self.n(3, 6), self.n(0, 20), self.n(0, 9), self.n(100, 999)),
            20 => format!("uuid {}", self.uuid()),
            21 => format!("seq={} offset={}", self.n(0, 1_000_000), self.n(0, 1_000_000_000_000)),
            22 => format!("retries={} timeout={}ms", self.n(0, 9), self.n(50, 30_000)),
            23 => format!("sha256:{}", self.hex(64)),
            24 => format!("listening on 0.0.0.0:{}", self.n(1024, 65535)),
            25 => format!("age {}s", self.n(1, 86_400)),
            26 => format!("rows={} of {}", self.n(0, 500), self.n(500, 100_000)),
            _ => format!("cache hit ratio {}.{}%", self.n(0, 99), self.n(0, 9)),
        }
    }

    fn ssn_value(&mut self) -> (u64, u64, u64) {
        let mut area = self.n(1, 899);
        if area == 666 {
            area = 665;
        }
        (area, self.n(1, 99), self.n(1, 9999))
    }

    fn phone_value(&mut self) -> String {
        let (a, e, x) = (self.n(201, 989), self.n(200, 999), self.n(0, 9999));
        match self.n(0, 6) {
            0 => format!("({a}) {e}-{x:04}"),
            1 => format!("{a}-{e}-{x:04}"),
            2 => format!("{a}.{e}.{x:04}"),
            3 => format!("+1 {a} {e} {x:04}"),
            4 => format!("+1-{a}-{e}-{x:04}"),
            5 => format!("1-{a}-{e}-{x:04}"),
            _ => format!("+1{a}{e}{x:04}"),
        }
    }

    fn email_value(&mut self) -> String {
        let (f, l) = (self.first_name().to_lowercase(), self.last_name().to_lowercase());
        let local = match self.n(0, 3) {
            0 => format!("{f}.{l}"),
            1 => format!("{}{l}{}", &f[..1], self.n(1, 99)),
            2 => format!("{f}_{l}+portal"),
            _ => format!("{l}.{f}{}", self.n(1950, 2005)),
        };
        format!("{local}@{}", self.pick(DOMAINS))
    }

    fn date_value(&mut self) -> String {
        let (y, m, d) = (self.n(1925, 2024), self.n(1, 12), self.n(1, 28));
        match self.n(0, 8) {
            0 => format!("{y}-{m:02}-{d:02}"),
            1 => format!("{m:02}/{d:02}/{y}"),
            2 => format!("{m}/{d}/{:02}", y % 100),
            3 => format!("{} {d}, {y}", MONTHS[m as usize - 1]),
            4 => format!("{d} {} {y}", MONTHS[m as usize - 1]),
            5 => format!("{d:02}-{}-{y}", MON[m as usize - 1]),
            6 => format!("{y}-{m:02}-{d:02}T{:02}:{:02}:00Z", self.n(0, 23), self.n(0, 59)),
            7 => format!("{y}{m:02}{d:02}"),
            _ => format!("{} {d} {y}", MON[m as usize - 1]),
        }
    }

    fn card_value(&mut self) -> String {
        let (prefix, len): (String, usize) = match self.n(0, 3) {
            0 => ("4".into(), 16),
            1 => (format!("5{}", self.n(1, 5)), 16),
            2 => (format!("3{}", self.pick(&["4", "7"])), 15),
            _ => ("6011".into(), 16),
        };
        let mut d: Vec<u8> = prefix.bytes().map(|c| c - b'0').collect();
        while d.len() < len - 1 {
            d.push(self.rng.random_range(0..10));
        }
        // Luhn check digit.
        let mut sum = 0;
        for (i, &x) in d.iter().rev().enumerate() {
            let mut v = u32::from(x);
            if i % 2 == 0 {
                v *= 2;
                if v > 9 {
                    v -= 9;
                }
            }
            sum += v;
        }
        d.push(((10 - sum % 10) % 10) as u8);
        let s: String = d.iter().map(|x| char::from(b'0' + x)).collect();
        match (self.n(0, 2), len) {
            (0, _) => s,
            (1, 16) => format!("{} {} {} {}", &s[..4], &s[4..8], &s[8..12], &s[12..]),
            (_, 16) => format!("{}-{}-{}-{}", &s[..4], &s[4..8], &s[8..12], &s[12..]),
            (1, _) => format!("{} {} {}", &s[..4], &s[4..10], &s[10..]),
            _ => format!("{}-{}-{}", &s[..4], &s[4..10], &s[10..]),
        }
    }

    fn public_ipv4(&mut self) -> String {
        loop {
            let a = self.n(1, 223);
            let b = self.n(0, 255);
            if a == 10
                || a == 127
                || (a == 172 && (16..32).contains(&b))
                || (a == 192 && b == 168)
                || (a == 169 && b == 254)
                || a == 0
            {
                continue;
            }
            return format!("{a}.{b}.{}.{}", self.n(0, 255), self.n(1, 254));
        }
    }

    fn ipv6(&mut self) -> String {
        match self.n(0, 2) {
            0 => format!("2001:db8:{:x}::{:x}", self.n(1, 0xffff), self.n(1, 0xffff)),
            1 => format!("2607:f8b0:{:x}:{:x}::{:x}", self.n(0x4000, 0x4fff), self.n(1, 0xfff), self.n(1, 0xffff)),
            _ => format!(
                "2a00:{:x}:{:x}:{:x}:{:x}:{:x}:{:x}:{:x}",
                self.n(1, 0xffff),
                self.n(0, 0xffff),
                self.n(0, 0xffff),
                self.n(0, 0xffff),
                self.n(0, 0xffff),
                self.n(0, 0xffff),
                self.n(1, 0xffff)
            ),
        }
    }

    fn address_value(&mut self) -> String {
        let num = self.n(1, 99_999);
        let dir =
            if self.chance(0.2) { format!("{} ", self.pick(&["N", "S", "E", "W", "N.", "NE"])) } else { String::new() };
        let street = if self.chance(0.1) { format!("{}th", self.n(4, 99)) } else { (self.pick(STREETS)).to_owned() };
        let unit = match self.n(0, 5) {
            0 => format!(" Apt {}{}", self.n(1, 40), self.pick(&["", "A", "B"])),
            1 => format!(", Suite {}", self.n(100, 999)),
            2 => format!(" #{}", self.n(1, 99)),
            _ => String::new(),
        };
        format!("{num} {dir}{street} {}{unit}", self.pick(SUFFIXES))
    }

    fn name_in_text(&mut self, l: &mut Line) {
        let (f, la) = (self.first_name(), self.last_name());
        match self.n(0, 8) {
            0 => l.t("patient=").p("name", &format!("{f} {la}")),
            1 => l.t("seen by Dr. ").p("name", &la),
            2 => {
                let t = self.pick(&["Mr. ", "Mrs. ", "Ms. "]);
                l.t(t).p("name", &la).t(" called")
            }
            3 => l.t("refill requested for ").p("name", &format!("{f} {la}")),
            4 => l.p("name", &format!("{f} {la}")).t(" checked in"),
            5 => {
                let m = char::from(b'A' + self.rng.random_range(0..26u8));
                l.t("note by ").p("name", &format!("{f} {m}. {la}"))
            }
            6 => l.t("patient: ").p("name", &format!("{la}, {f}")),
            7 => l.t("Patient ").p("name", &format!("{f} {la}")).t(" admitted"),
            _ => l.t("guardian ").p("name", &format!("{f} {la}")),
        };
    }

    /// Appends one PHI item of detector `det` (with the context it needs) to a text line.
    fn phi_text(&mut self, det: &'static str, l: &mut Line) {
        match det {
            "ssn" => {
                let (a, g, s) = self.ssn_value();
                match self.n(0, 4) {
                    0 => l.t("ssn=").p(det, &format!("{a:03}-{g:02}-{s:04}")),
                    1 => l.t("SSN: ").p(det, &format!("{a:03} {g:02} {s:04}")),
                    2 => l.t("social security number ").p(det, &format!("{a:03}{g:02}{s:04}")),
                    3 => l.t("verified ").p(det, &format!("{a:03}-{g:02}-{s:04}")).t(" ok"),
                    _ => l.t("ssn ").p(det, &format!("{a:03}{g:02}{s:04}")),
                };
            }
            "phone" => {
                if self.chance(0.15) {
                    let v = format!("{}{}", self.n(201, 989), self.digits(7));
                    l.t(self.pick(&["phone=", "callback ", "fax: ", "mobile "])).p(det, &v);
                } else {
                    let v = self.phone_value();
                    l.t(self.pick(&["call back at ", "contact ", "fax: ", "tel ", "reached patient on ", ""]))
                        .p(det, &v);
                }
            }
            "email" => {
                let v = self.email_value();
                l.t(self.pick(&["user ", "sent reminder to ", "email=", "<"])).p(det, &v);
            }
            "date" => {
                let v = self.date_value();
                l.t(self.pick(&[
                    "DOB: ",
                    "dob=",
                    "date of birth ",
                    "born ",
                    "admitted on ",
                    "admission date: ",
                    "discharged ",
                    "discharge_date=",
                    "died ",
                    "deceased on ",
                    "birthDate=",
                ]))
                .p(det, &v);
            }
            "age" => {
                let v = self.n(90, 110).to_string();
                match self.n(0, 4) {
                    0 => l.t("age: ").p(det, &v),
                    1 => l.t("aged ").p(det, &v).t(", stable"),
                    2 => l.t("a ").p(det, &v).t(" year old patient"),
                    3 => l.p(det, &v).t("-year-old female"),
                    _ => l.p(det, &v).t(" yo M"),
                };
            }
            "mrn" => {
                let v = match self.n(0, 2) {
                    0 => self.digits(8),
                    1 => format!("{}{}", char::from(b'A' + self.rng.random_range(0..26u8)), self.digits(7)),
                    _ => format!("{}-{}", self.digits(3), self.digits(5)),
                };
                l.t(self.pick(&["MRN: ", "mrn=", "medical record number ", "MRN#", "chart "])).p(det, &v);
            }
            "health_plan" => {
                let v = match self.n(0, 2) {
                    0 => format!("XJH{}", self.digits(9)),
                    1 => format!("{}-{}-{}", self.digits(2), self.digits(4), self.digits(4)),
                    _ => format!("W{}", self.digits(9)),
                };
                l.t(self.pick(&["Member ID: ", "policy #: ", "subscriber id ", "medicaid ", "insurance id="]))
                    .p(det, &v);
            }
            "account" => {
                let len = self.n(8, 12) as usize;
                let v = self.digits(len);
                l.t(self.pick(&["account number ", "acct# ", "bank account ", "account: "])).p(det, &v);
            }
            "license" => {
                let v = match self.n(0, 1) {
                    0 => format!("{}{}", char::from(b'A' + self.rng.random_range(0..26u8)), self.digits(7)),
                    _ => format!("S{}-{}-{}", self.digits(3), self.digits(4), self.digits(4)),
                };
                l.t(self.pick(&["driver's license ", "DL: ", "license number ", "lic# "])).p(det, &v);
            }
            "card" => {
                let v = self.card_value();
                l.t(self.pick(&["card ", "pan=", "charged ", "cc: "])).p(det, &v);
            }
            "ip" => {
                let v6 = self.chance(0.25);
                let v = if v6 { self.ipv6() } else { self.public_ipv4() };
                let port = self.chance(0.3);
                l.t(self.pick(&["client=", "from ", "remote_addr=", "peer "]));
                if v6 && port {
                    l.t("[");
                }
                l.p(det, &v);
                if port {
                    l.t(&format!("{}:{}", if v6 { "]" } else { "" }, self.n(1024, 65535)));
                }
            }
            "url" => match self.n(0, 2) {
                0 => {
                    let v = format!("{}%20{}", self.first_name(), self.last_name());
                    l.t("GET https://portal.example.com/v1/search?patient_name=")
                        .p(det, &v)
                        .t(&format!("&page={}", self.n(1, 9)));
                }
                1 => {
                    let v = self.email_value().replace('@', "%40");
                    l.t("GET https://h.example.com/u/").p(det, &v).t("/profile");
                }
                _ => {
                    let v = format!("{}+{}", self.first_name(), self.last_name());
                    l.t("redirect https://x.example.io/cb?fname=").p(det, &v);
                }
            },
            "zip" => {
                let v = if self.chance(0.3) {
                    format!("{:05}-{:04}", self.n(1000, 99_999), self.n(1, 9999))
                } else {
                    format!("{:05}", self.n(1000, 99_999))
                };
                match self.n(0, 2) {
                    0 => {
                        let (c, st) = (self.pick(&["Boston", "Austin", "Miami", "Tucson"]), self.pick(SAFE_STATES));
                        l.t(&format!("{c}, {st} ")).p(det, &v)
                    }
                    1 => l.t("zip=").p(det, &v),
                    _ => l.t("zip code ").p(det, &v),
                };
            }
            "address" => {
                let v = self.address_value();
                l.t(self.pick(&["lives at ", "ship to ", "address: ", "moved to "])).p(det, &v);
                if self.chance(0.3) {
                    let (c, st) = self.pick(CITIES);
                    l.t(", ").p(det, c).t(&format!(", {st} "));
                    let z = format!("{:05}", self.n(1000, 99_999));
                    l.p("zip", &z);
                }
            }
            _ => self.name_in_text(l),
        }
    }

    fn prefix(&mut self, l: &mut Line) {
        let ts = self.timestamp();
        match self.n(0, 2) {
            0 => l.t(&format!("{ts} {} {}: ", self.pick(LEVELS), self.pick(LOGGERS))),
            1 => l.t(&format!("time={ts} level={} msg=\"", self.pick(LEVELS))),
            _ => l.t(&format!("[{ts}] [{}] ", self.pick(LEVELS))),
        };
    }

    /// A text line; with `det` it carries that detector's PHI at a random place.
    pub fn text_line(&mut self, det: Option<&'static str>) -> Labelled {
        let mut l = Line::new();
        self.prefix(&mut l);
        let k = self.n(1, 4);
        let at = self.n(0, k);
        for i in 0..=k {
            if i > 0 {
                l.t(" ");
            }
            if Some(i) == Some(at)
                && let Some(d) = det
            {
                self.phi_text(d, &mut l);
            } else {
                let t = self.trap();
                l.t(&t);
            }
        }
        if l.s.contains("msg=\"") {
            l.t("\"");
        }
        Labelled { line: l.s, json: false, phi: l.phi }
    }

    /// A compact JSON line; with `det` it carries that detector's PHI in a key-ruled
    /// field, a nested object, or the message text.
    pub fn json_line(&mut self, det: Option<&'static str>) -> Labelled {
        let mut fields: Vec<(String, serde_json::Value)> = vec![
            ("ts".into(), self.timestamp().into()),
            ("level".into(), (self.pick(&["info", "warn", "error"])).into()),
            ("trace_id".into(), self.hex(32).into()),
            ("span_id".into(), self.hex(16).into()),
            ("duration_ms".into(), self.n(0, 5000).into()),
            ("status".into(), self.n(200, 504).into()),
        ];
        if self.chance(0.5) {
            fields.push(("pod".into(), format!("platform-api-{}-{}", self.hex(9), self.hex(5)).into()));
            fields.push((
                "version".into(),
                format!("{}.{}.{}.{}", self.n(0, 9), self.n(0, 9), self.n(0, 99), self.n(0, 255)).into(),
            ));
        }
        let mut phi = Vec::new();
        let mut msg = self.trap();
        if let Some(d) = det {
            let structured = self.chance(0.6);
            let keyed: Option<(&str, String)> = match d {
                "ssn" => {
                    let (a, g, s) = self.ssn_value();
                    Some(("ssn", format!("{a:03}-{g:02}-{s:04}")))
                }
                "phone" => Some((self.pick(&["phone", "phoneNumber", "fax_number"]), self.phone_value())),
                "email" => Some((self.pick(&["email", "Email", "contact_email"]), self.email_value())),
                "date" => {
                    Some((self.pick(&["dob", "birthDate", "admission_date", "discharged_at"]), self.date_value()))
                }
                "mrn" => Some(("mrn", self.digits(8))),
                "health_plan" => Some(("member_id", format!("XJH{}", self.digits(9)))),
                "account" => Some(("account_number", self.digits(10))),
                "license" => Some(("drivers_license", format!("D{}", self.digits(7)))),
                "card" => Some(("card_number", self.card_value())),
                "ip" => Some(("client_ip", self.public_ipv4())),
                "zip" => Some(("zip", format!("{:05}", self.n(1000, 99_999)))),
                "address" => Some(("address", self.address_value())),
                "name" => {
                    Some((self.pick(&["patient_name", "firstName", "last-name", "PATIENT_NAME"]), self.first_name()))
                }
                _ => None,
            };
            match (structured, keyed) {
                (true, Some((k, v))) => {
                    if self.chance(0.5) {
                        fields.push(("patient".into(), serde_json::json!({ "id": self.n(1, 99_999), k: v.clone() })));
                    } else {
                        fields.push((k.to_owned(), v.clone().into()));
                    }
                    phi.push(Phi { det: d, value: v, span: None });
                }
                _ if d == "age" && structured => {
                    let v = self.n(90, 110);
                    fields.push(("patient".into(), serde_json::json!({ "age": v, "visits": self.n(1, 30) })));
                    phi.push(Phi { det: d, value: format!("\"age\":{v}"), span: None });
                }
                _ => {
                    let mut l = Line::new();
                    self.phi_text(d, &mut l);
                    l.t(" ").t(&msg);
                    msg = l.s;
                    phi.extend(l.phi.into_iter().map(|mut p| {
                        p.span = None;
                        p
                    }));
                }
            }
        }
        fields.insert(2, ("msg".into(), msg.into()));
        let mut line = String::from("{");
        for (i, (k, v)) in fields.iter().enumerate() {
            if i > 0 {
                line.push(',');
            }
            line.push_str(&serde_json::to_string(k).unwrap());
            line.push(':');
            line.push_str(&serde_json::to_string(v).unwrap());
        }
        line.push('}');
        Labelled { line, json: true, phi }
    }

    /// One line: PHI with probability `phi_rate` (a detector chosen uniformly), JSON
    /// with probability `json_rate`.
    pub fn line(&mut self, phi_rate: f64, json_rate: f64) -> Labelled {
        let det = if self.chance(phi_rate) { Some(DETECTORS[self.rng.random_range(0..DETECTORS.len())]) } else { None };
        if self.chance(json_rate) { self.json_line(det) } else { self.text_line(det) }
    }

    /// A clean fragment for property tests to embed PHI into.
    pub fn noise(&mut self) -> String {
        self.trap()
    }

    /// A single PHI value of detector `det` with its context, as text.
    pub fn phi_fragment(&mut self, det: &'static str) -> (String, Vec<Phi>) {
        let mut l = Line::new();
        self.phi_text(det, &mut l);
        (l.s, l.phi)
    }

    /// The random source, for callers that need more randomness in step.
    pub fn rng(&mut self) -> &mut StdRng {
        &mut self.rng
    }
}

/// Serialises a labelled line as one JSONL record of the checked-in sample.
pub fn to_sample_json(l: &Labelled) -> String {
    let phi: Vec<serde_json::Value> = l
        .phi
        .iter()
        .map(|p| match p.span {
            Some((s, e)) => serde_json::json!({ "d": p.det, "v": p.value, "s": s, "e": e }),
            None => serde_json::json!({ "d": p.det, "v": p.value }),
        })
        .collect();
    serde_json::json!({ "line": l.line, "json": l.json, "phi": phi }).to_string()
}

/// Parses one record of the checked-in sample.
pub fn from_sample_json(s: &str) -> Option<Labelled> {
    let v: serde_json::Value = serde_json::from_str(s).ok()?;
    let phi = v["phi"]
        .as_array()?
        .iter()
        .map(|p| {
            let det = DETECTORS.iter().copied().find(|d| Some(*d) == p["d"].as_str())?;
            let span = match (p["s"].as_u64(), p["e"].as_u64()) {
                (Some(s), Some(e)) => Some((s as usize, e as usize)),
                _ => None,
            };
            Some(Phi { det, value: p["v"].as_str()?.to_owned(), span })
        })
        .collect::<Option<Vec<_>>>()?;
    Some(Labelled { line: v["line"].as_str()?.to_owned(), json: v["json"].as_bool()?, phi })
}
