//! CronJob schedules: the standard 5-field cron syntax (minute, hour, day of month, month,
//! day of week) with `*`, `?`, ranges, steps, lists and month/day names, and the `@yearly`,
//! `@monthly`, `@weekly`, `@daily`/`@midnight`, `@hourly` macros, as Kubernetes accepts them.
//!
//! Times are matched on the wall clock of a time zone: an instant fires when its local time
//! matches. So a local time skipped by a daylight-saving jump never fires, and one repeated
//! by a fall-back fires at both instants it names.

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, NaiveTime, Timelike, Utc};
use chrono::{LocalResult, TimeZone};
use chrono_tz::Tz;

/// A schedule field or expression that cannot be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(String);

/// A parsed schedule: one bit per allowed value of each field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    minutes: u64,
    hours: u32,
    /// Bits 1..=31.
    days_of_month: u32,
    /// Bits 1..=12.
    months: u16,
    /// Bits 0..=6, Sunday = 0.
    days_of_week: u8,
    /// The day-of-month or day-of-week field was `*`/`?`: the two are then ANDed, else ORed
    /// (as in Vixie cron and the library Kubernetes uses).
    day_star: bool,
}

const MONTHS: [&str; 12] =
    ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"];
const DAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

/// How far ahead a schedule is searched before it is declared never to fire (`0 0 30 2 *`).
const SEARCH_YEARS: i32 = 5;

struct Field {
    min: u32,
    max: u32,
    names: &'static [&'static str],
    /// The first name's value (`jan` = 1, `sun` = 0).
    name_base: u32,
}

const MINUTE: Field = Field { min: 0, max: 59, names: &[], name_base: 0 };
const HOUR: Field = Field { min: 0, max: 23, names: &[], name_base: 0 };
const DOM: Field = Field { min: 1, max: 31, names: &[], name_base: 0 };
const MONTH: Field = Field { min: 1, max: 12, names: &MONTHS, name_base: 1 };
// 7 is accepted as Sunday and folded onto 0.
const DOW: Field = Field { min: 0, max: 7, names: &DAYS, name_base: 0 };

impl Field {
    fn value(&self, s: &str) -> Result<u32, ParseError> {
        let lower = s.to_ascii_lowercase();
        if let Some(i) = self.names.iter().position(|n| *n == lower) {
            return Ok(i as u32 + self.name_base);
        }
        let n: u32 = s.parse().map_err(|_| ParseError(format!("failed to parse int from {s}")))?;
        Ok(n)
    }

    /// `*`, `?`, `N`, `A-B`, each with an optional `/STEP`, and lists of those. Returns the
    /// bits and whether the field was a bare star (`*`, `?`, `*/1`).
    fn parse(&self, expr: &str) -> Result<(u64, bool), ParseError> {
        let mut bits = 0u64;
        let mut star = false;
        for part in expr.split(',') {
            let (range, step) = match part.split_once('/') {
                Some((r, s)) => {
                    let step: u32 = s
                        .parse()
                        .map_err(|_| ParseError(format!("failed to parse int from {s}")))?;
                    (r, Some(step))
                }
                None => (part, None),
            };
            let (lo, hi, is_star) = if range == "*" || range == "?" {
                (self.min, self.max, true)
            } else if let Some((a, b)) = range.split_once('-') {
                (self.value(a)?, self.value(b)?, false)
            } else {
                let v = self.value(range)?;
                // `N/STEP` runs from N to the end of the field.
                (v, if step.is_some() { self.max } else { v }, false)
            };
            if lo < self.min {
                return Err(ParseError(format!(
                    "beginning of range ({lo}) below minimum ({}): {part}",
                    self.min
                )));
            }
            if hi > self.max {
                return Err(ParseError(format!(
                    "end of range ({hi}) above maximum ({}): {part}",
                    self.max
                )));
            }
            if lo > hi {
                return Err(ParseError(format!(
                    "beginning of range ({lo}) beyond end of range ({hi}): {part}"
                )));
            }
            let step = step.unwrap_or(1);
            if step == 0 {
                return Err(ParseError(format!(
                    "step of range should be a positive number: {part}"
                )));
            }
            star |= is_star && step == 1;
            let mut v = lo;
            while v <= hi {
                bits |= 1 << v;
                v += step;
            }
        }
        Ok((bits, star))
    }
}

impl std::str::FromStr for Schedule {
    type Err = ParseError;

    fn from_str(spec: &str) -> Result<Self, ParseError> {
        let spec = spec.trim();
        let expanded = match spec.to_ascii_lowercase().as_str() {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            s if s.starts_with('@') => {
                return Err(ParseError(format!("unrecognized descriptor: {spec}")));
            }
            _ => spec,
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(ParseError(format!(
                "expected exactly 5 fields, found {}: [{}]",
                fields.len(),
                fields.join(" ")
            )));
        }
        let (minutes, _) = MINUTE.parse(fields[0])?;
        let (hours, _) = HOUR.parse(fields[1])?;
        let (dom, dom_star) = DOM.parse(fields[2])?;
        let (months, _) = MONTH.parse(fields[3])?;
        let (dow, dow_star) = DOW.parse(fields[4])?;
        let dow = (dow | (dow >> 7)) & 0x7f;
        Ok(Schedule {
            minutes,
            hours: hours as u32,
            days_of_month: dom as u32,
            months: months as u16,
            days_of_week: dow as u8,
            day_star: dom_star || dow_star,
        })
    }
}

impl Schedule {
    fn day_matches(&self, d: NaiveDate) -> bool {
        let dom = self.days_of_month & (1 << d.day()) != 0;
        let dow = self.days_of_week & (1 << d.weekday().num_days_from_sunday()) != 0;
        if self.day_star { dom && dow } else { dom || dow }
    }

    /// The first local wall-clock minute at or after `t` (seconds dropped) that matches,
    /// within [`SEARCH_YEARS`] of it.
    fn next_local(&self, t: NaiveDateTime) -> Option<NaiveDateTime> {
        let limit = t.year() + SEARCH_YEARS;
        let mut t = t.with_second(0)?.with_nanosecond(0)?;
        while t.year() <= limit {
            if self.months & (1 << t.month()) == 0 {
                let (y, m) =
                    if t.month() == 12 { (t.year() + 1, 1) } else { (t.year(), t.month() + 1) };
                t = NaiveDate::from_ymd_opt(y, m, 1)?.and_time(NaiveTime::MIN);
                continue;
            }
            if !self.day_matches(t.date()) {
                t = t.date().succ_opt()?.and_time(NaiveTime::MIN);
                continue;
            }
            if self.hours & (1 << t.hour()) == 0 {
                t = t.with_minute(0)? + Duration::hours(1);
                continue;
            }
            if self.minutes & (1 << t.minute()) == 0 {
                t += Duration::minutes(1);
                continue;
            }
            return Some(t);
        }
        None
    }

    /// The first instant strictly after `after` at which the schedule fires in `tz`.
    pub fn next_after(&self, after: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
        // Start two hours back on the local clock: around a fall-back the later instant of a
        // repeated wall-clock time has a smaller local time than instants before it.
        let mut cursor = after.with_timezone(&tz).naive_local() - Duration::hours(2);
        let mut best: Option<(DateTime<Utc>, NaiveDateTime)> = None;
        loop {
            let local = self.next_local(cursor)?;
            if let Some((_, at)) = best
                && local > at + Duration::hours(3)
            {
                break;
            }
            let instants = match tz.from_local_datetime(&local) {
                LocalResult::Single(a) => vec![a],
                LocalResult::Ambiguous(a, b) => vec![a, b],
                LocalResult::None => vec![],
            };
            for i in instants.into_iter().map(|i| i.with_timezone(&Utc)) {
                if i > after && best.is_none_or(|(b, _)| i < b) {
                    best = Some((i, local));
                }
            }
            cursor = local + Duration::minutes(1);
        }
        best.map(|(b, _)| b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).expect("time").with_timezone(&Utc)
    }

    #[test]
    fn schedule_should_parse_like_kubernetes() {
        let ok: &[(&str, &str)] = &[
            ("*/15 * * * *", "0,15,30,45 * * * *"),
            ("0 9-17/2 * * MON-FRI", "0 9,11,13,15,17 * * 1,2,3,4,5"),
            ("0 0 1 JAN,jul *", "0 0 1 1,7 *"),
            ("@hourly", "0 * * * *"),
            ("@daily", "0 0 * * *"),
            ("@midnight", "0 0 * * *"),
            ("@weekly", "0 0 * * 0"),
            ("@monthly", "0 0 1 * *"),
            ("@yearly", "0 0 1 1 *"),
            ("@annually", "0 0 1 1 *"),
            ("0 0 * * 7", "0 0 * * 0"),
            ("0 0 ? * 5-7", "0 0 * * 0,5,6"),
            ("5/20 * * * *", "5,25,45 * * * *"),
        ];
        for (a, b) in ok {
            let pa: Schedule = a.parse().unwrap_or_else(|e| panic!("{a}: {e}"));
            let pb: Schedule = b.parse().unwrap_or_else(|e| panic!("{b}: {e}"));
            assert_eq!(
                (pa.minutes, pa.hours, pa.days_of_month, pa.months, pa.days_of_week),
                (pb.minutes, pb.hours, pb.days_of_month, pb.months, pb.days_of_week),
                "{a} vs {b}"
            );
        }
        let bad: &[(&str, &str)] = &[
            ("* * * *", "expected exactly 5 fields"),
            ("60 * * * *", "above maximum"),
            ("* 24 * * *", "above maximum"),
            ("* * 0 * *", "below minimum"),
            ("* * * 13 *", "above maximum"),
            ("5-1 * * * *", "beyond end of range"),
            ("*/0 * * * *", "positive number"),
            ("x * * * *", "failed to parse int"),
            ("@every 5m", "unrecognized descriptor"),
        ];
        for (s, want) in bad {
            let err = s.parse::<Schedule>().expect_err(s).to_string();
            assert!(err.contains(want), "{s}: {err}");
        }
    }

    #[test]
    fn schedule_should_compute_the_next_time() {
        let cases: &[(&str, &str, &str, &str)] = &[
            // (schedule, zone, after, next)
            ("*/1 * * * *", "UTC", "2024-01-01T10:00:00Z", "2024-01-01T10:01:00Z"),
            ("*/1 * * * *", "UTC", "2024-01-01T10:00:30Z", "2024-01-01T10:01:00Z"),
            ("*/15 * * * *", "UTC", "2024-01-01T10:14:59Z", "2024-01-01T10:15:00Z"),
            ("0 * * * *", "UTC", "2024-01-01T23:00:00Z", "2024-01-02T00:00:00Z"),
            ("0 0 1 * *", "UTC", "2024-01-31T12:00:00Z", "2024-02-01T00:00:00Z"),
            ("0 0 29 2 *", "UTC", "2023-03-01T00:00:00Z", "2024-02-29T00:00:00Z"),
            ("30 8 * * MON", "UTC", "2024-01-03T00:00:00Z", "2024-01-08T08:30:00Z"),
            // Both day fields restricted: either one matches (the 13th, or any Friday).
            ("0 0 13 * FRI", "UTC", "2024-01-01T00:00:00Z", "2024-01-05T00:00:00Z"),
            ("0 0 13 * FRI", "UTC", "2024-01-12T00:00:00Z", "2024-01-13T00:00:00Z"),
            // A star in one day field: both must match.
            ("0 0 */1 * FRI", "UTC", "2024-01-01T00:00:00Z", "2024-01-05T00:00:00Z"),
            ("0 9 * * *", "America/New_York", "2024-01-01T00:00:00Z", "2024-01-01T14:00:00Z"),
            ("0 9 * * *", "Europe/Paris", "2024-07-01T00:00:00Z", "2024-07-01T07:00:00Z"),
            // Spring forward in New York (2024-03-10 02:00 → 03:00): 02:30 does not exist that
            // day, so the next firing is the next day's.
            ("30 2 * * *", "America/New_York", "2024-03-09T08:00:00Z", "2024-03-11T06:30:00Z"),
            ("0 3 * * *", "America/New_York", "2024-03-10T00:00:00Z", "2024-03-10T07:00:00Z"),
            // Fall back (2024-11-03 02:00 EDT → 01:00 EST): 01:30 happens twice, at 05:30Z
            // and 06:30Z, and fires at both.
            ("30 1 * * *", "America/New_York", "2024-11-03T00:00:00Z", "2024-11-03T05:30:00Z"),
            ("30 1 * * *", "America/New_York", "2024-11-03T05:30:00Z", "2024-11-03T06:30:00Z"),
            ("30 1 * * *", "America/New_York", "2024-11-03T06:30:00Z", "2024-11-04T06:30:00Z"),
            // An hourly schedule across the fall-back keeps one firing per real hour.
            ("0 * * * *", "America/New_York", "2024-11-03T05:00:00Z", "2024-11-03T06:00:00Z"),
            ("0 * * * *", "America/New_York", "2024-11-03T06:00:00Z", "2024-11-03T07:00:00Z"),
        ];
        for (spec, zone, after, want) in cases {
            let s: Schedule = spec.parse().expect("schedule");
            let tz: Tz = zone.parse().expect("zone");
            let got = s.next_after(utc(after), tz);
            assert_eq!(got, Some(utc(want)), "{spec} in {zone} after {after}");
        }
        let never: Schedule = "0 0 30 2 *".parse().expect("schedule");
        assert_eq!(never.next_after(utc("2024-01-01T00:00:00Z"), Tz::UTC), None);
    }
}
