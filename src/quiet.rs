//! Quiet hours, the right to disconnect: the hours and days during which
//! nothing is pushed to a user. A notification that arrives then waits in
//! their feed, held until the quiet hours end ([`hold_until`]).
//!
//! Written `HH:MM-HH:MM` then the days off (`20:00-07:00 sun`, `19:30-07:30
//! sat dim`): quiet from the first time to the second (through midnight
//! when the second is earlier), and all day on the days named. Equal
//! times mean no quiet hours by time (`00:00-00:00 sun`: Sundays only).
//! Times are the school's (`timezone`).

use chrono::{Datelike, NaiveTime, TimeZone, Timelike};
use serde::{Deserialize, Serialize};

/// One user's quiet hours (or the school's default for a role).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuietHours {
    /// `HH:MM`, the school's time.
    pub start: String,
    /// `HH:MM`; earlier than `start`: the next morning.
    pub end: String,
    /// Whole days off: `mon` … `sun`.
    #[serde(default)]
    pub days: Vec<String>,
}

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
const JOURS: [&str; 7] = ["lun", "mar", "mer", "jeu", "ven", "sam", "dim"];

impl QuietHours {
    /// Parses `HH:MM-HH:MM day…` (or `off`: none).
    pub fn parse(s: &str) -> Result<QuietHours, String> {
        let mut words = s.split_whitespace();
        let Some(span) = words.next() else {
            return Err("empty quiet hours: write HH:MM-HH:MM [days] or off".to_owned());
        };
        if span == "off" {
            return Ok(QuietHours::none());
        }
        let (start, end) = span
            .split_once('-')
            .ok_or_else(|| format!("{span:?} is not HH:MM-HH:MM"))?;
        let hours = QuietHours {
            start: start.to_owned(),
            end: end.to_owned(),
            days: words.map(str::to_owned).collect(),
        };
        hours.check()?;
        Ok(hours.normalized())
    }

    /// No quiet hours at all.
    pub fn none() -> QuietHours {
        QuietHours {
            start: "00:00".to_owned(),
            end: "00:00".to_owned(),
            days: Vec::new(),
        }
    }

    /// Checks the times and days.
    pub fn check(&self) -> Result<(), String> {
        minutes(&self.start)?;
        minutes(&self.end)?;
        if self.days.len() > 7 {
            return Err("at most 7 days".to_owned());
        }
        for day in &self.days {
            day_index(day)?;
        }
        Ok(())
    }

    /// Days in English, in week order, once each.
    pub fn normalized(mut self) -> QuietHours {
        let mut days: Vec<usize> = self.days.iter().filter_map(|d| day_index(d).ok()).collect();
        days.sort_unstable();
        days.dedup();
        self.days = days.into_iter().map(|d| DAYS[d].to_owned()).collect();
        self
    }

    fn span(&self) -> (u32, u32) {
        (
            minutes(&self.start).unwrap_or(0),
            minutes(&self.end).unwrap_or(0),
        )
    }

    fn off_days(&self) -> [bool; 7] {
        let mut off = [false; 7];
        for day in &self.days {
            if let Ok(d) = day_index(day) {
                off[d] = true;
            }
        }
        off
    }

    /// Whether `local` (the school's time) is quiet.
    fn quiet_at<T: Datelike + Timelike>(&self, local: &T) -> bool {
        let day = local.weekday().num_days_from_monday() as usize;
        if self.off_days()[day] {
            return true;
        }
        let (start, end) = self.span();
        let now = local.hour() * 60 + local.minute();
        match start.cmp(&end) {
            std::cmp::Ordering::Equal => false,
            std::cmp::Ordering::Less => (start..end).contains(&now),
            std::cmp::Ordering::Greater => now >= start || now < end,
        }
    }
}

fn minutes(s: &str) -> Result<u32, String> {
    let time = NaiveTime::parse_from_str(s, "%H:%M").map_err(|_| format!("{s:?} is not HH:MM"))?;
    Ok(time.hour() * 60 + time.minute())
}

fn day_index(day: &str) -> Result<usize, String> {
    let day = day.to_lowercase();
    let day = day.trim_end_matches('.');
    DAYS.iter()
        .position(|d| *d == day || (day.len() > 3 && day.starts_with(d)))
        .or_else(|| {
            JOURS
                .iter()
                .position(|d| *d == day || (day.len() > 3 && day.starts_with(d)))
        })
        .ok_or_else(|| format!("{day:?} is not a day (mon … sun)"))
}

/// The end of quiet hours that never end (quiet every day): the last
/// millisecond of year 9999, below 2^53 so that every client's number
/// type holds it exactly.
pub const NEVER: u64 = 253_402_300_799_999;

/// When what arrives at `now` (ms) may be pushed: `None` if now, else the
/// end of the quiet hours (ms), in the school's time zone `tz`; [`NEVER`]
/// for someone quiet every day (nothing is pushed to them: they read
/// their feed).
pub fn hold_until(hours: &QuietHours, now: u64, tz: chrono_tz::Tz) -> Option<u64> {
    let now_utc = chrono::DateTime::from_timestamp_millis(i64::try_from(now).ok()?)?;
    let local = now_utc.with_timezone(&tz);
    if !hours.quiet_at(&local) {
        return None;
    }
    // Quiet hours end at an `end` time or at a midnight (after a day
    // off): the first such moment, within 8 days, that is not quiet.
    let (_, end) = hours.span();
    let end = NaiveTime::from_hms_opt(end / 60, end % 60, 0)?;
    let mut candidates = Vec::with_capacity(16);
    for day in 0..=8 {
        let date = local.date_naive() + chrono::Days::new(day);
        for time in [NaiveTime::MIN, end] {
            let local_time = date.and_time(time);
            // A time the clock skips (the spring change, 02:00 → 03:00):
            // the moment the skipped hour ends.
            let at = tz.from_local_datetime(&local_time).earliest().or_else(|| {
                tz.from_local_datetime(&(local_time + chrono::TimeDelta::hours(1)))
                    .earliest()
                    .map(|at| at.with_minute(0).unwrap_or(at))
            });
            if let Some(at) = at {
                if at > local {
                    candidates.push(at);
                }
            }
        }
    }
    candidates.sort();
    Some(
        candidates
            .into_iter()
            .find(|at| !hours.quiet_at(at))
            .and_then(|at| u64::try_from(at.timestamp_millis()).ok())
            .unwrap_or(NEVER),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const TZ: chrono_tz::Tz = chrono_tz::Europe::Paris;

    /// Paris local time → ms.
    fn at(y: i32, m: u32, d: u32, h: u32, min: u32) -> u64 {
        TZ.with_ymd_and_hms(y, m, d, h, min, 0)
            .single()
            .unwrap()
            .timestamp_millis() as u64
    }

    #[test]
    fn evenings_and_sundays() {
        let hours = QuietHours::parse("20:00-07:00 dim").unwrap();
        assert_eq!(hours.days, vec!["sun"]);
        // Friday 18:00: pushed now. Friday 23:00: Saturday 07:00.
        assert_eq!(hold_until(&hours, at(2026, 12, 11, 18, 0), TZ), None);
        assert_eq!(
            hold_until(&hours, at(2026, 12, 11, 23, 0), TZ),
            Some(at(2026, 12, 12, 7, 0))
        );
        // Saturday 21:00: through Sunday, Monday 07:00.
        assert_eq!(
            hold_until(&hours, at(2026, 12, 12, 21, 0), TZ),
            Some(at(2026, 12, 14, 7, 0))
        );
        // Monday 06:59.
        assert_eq!(
            hold_until(&hours, at(2026, 12, 14, 6, 59), TZ),
            Some(at(2026, 12, 14, 7, 0))
        );
    }

    #[test]
    fn a_day_off_alone_and_none() {
        let sundays = QuietHours::parse("00:00-00:00 sun").unwrap();
        assert_eq!(
            hold_until(&sundays, at(2026, 12, 13, 15, 0), TZ),
            Some(at(2026, 12, 14, 0, 0))
        );
        assert_eq!(hold_until(&sundays, at(2026, 12, 12, 23, 0), TZ), None);
        assert_eq!(
            hold_until(
                &QuietHours::parse("off").unwrap(),
                at(2026, 12, 13, 3, 0),
                TZ
            ),
            None
        );
        let every_day = QuietHours::parse("00:00-00:00 mon tue wed thu fri sat sun").unwrap();
        assert_eq!(
            hold_until(&every_day, at(2026, 12, 13, 3, 0), TZ),
            Some(NEVER)
        );
    }

    #[test]
    fn across_a_clock_change() {
        // 2027-03-28: Paris goes from 02:00 to 03:00.
        let hours = QuietHours::parse("22:00-02:30").unwrap();
        // 02:30 does not exist that night: the hold ends when the clock
        // jumps to 03:00.
        assert_eq!(
            hold_until(&hours, at(2027, 3, 27, 23, 0), TZ),
            Some(at(2027, 3, 28, 3, 0))
        );
    }

    #[test]
    fn bad_input_is_refused() {
        for bad in ["", "8h-9h", "20:00", "20:00-07:00 someday", "25:00-07:00"] {
            assert!(QuietHours::parse(bad).is_err(), "{bad:?}");
        }
    }
}
