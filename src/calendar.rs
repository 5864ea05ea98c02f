//! Calendar feeds (RFC 5545): `GET /cal/<address>.ics` gives one user's
//! class agendas and the homework due for them (for a parent, for each
//! child, labelled), so a family subscribes once from a phone's calendar.
//! The address is checked by `kinds::homework::feed`; this module reads
//! the rooms and writes the iCalendar text with the `icalendar` crate.
//!
//! What goes in: agenda items from 30 days ago to a year ahead, and
//! homework due in the same window, as the user would see them now
//! (scheduled entries only once public, cancelled agenda items marked
//! `STATUS:CANCELLED`). A calendar app polls the address (every few hours
//! by default), so each request reads the rooms afresh.

use std::sync::Arc;

use chrono::{DateTime, Days, NaiveDate, TimeZone, Utc};
use icalendar::{Calendar, Component, DatePerhapsTime, EventLike, EventStatus};

use crate::auth::Claims;
use crate::hub::{Hub, HubError};
use crate::kinds::{agenda, homework};
use crate::room::policy::{self, Action};

/// Days before today the feed still shows.
const PAST_DAYS: u64 = 30;
/// Days after today it shows.
const AHEAD_DAYS: u64 = 365;
/// Items per room at most (an agenda reply's bound).
const PER_ROOM: usize = 500;

#[derive(Debug, thiserror::Error)]
pub enum CalendarError {
    #[error(transparent)]
    Feed(#[from] homework::FeedError),
    #[error(transparent)]
    Hub(#[from] HubError),
    #[error("bad time zone {0:?}")]
    TimeZone(String),
}

/// The feed at `address` (the part of the path before `.ics`), as
/// iCalendar text.
pub async fn feed(hub: &Arc<Hub>, address: &str) -> Result<String, CalendarError> {
    let now = (hub.clock)();
    let (h, signed) = (hub.clone(), address.to_owned());
    let owner = tokio::task::spawn_blocking(move || homework::open_feed(&h, &signed, now))
        .await
        .map_err(HubError::from)??;
    let tz: chrono_tz::Tz = hub
        .config
        .timezone
        .parse()
        .map_err(|_| CalendarError::TimeZone(hub.config.timezone.clone()))?;
    let today = Utc
        .timestamp_millis_opt(i64::try_from(now).unwrap_or(i64::MAX))
        .single()
        .map_or(NaiveDate::MIN, |t| t.with_timezone(&tz).date_naive());
    let from = today
        .checked_sub_days(Days::new(PAST_DAYS))
        .unwrap_or(today);
    let to = today
        .checked_add_days(Days::new(AHEAD_DAYS))
        .unwrap_or(today);
    let claims = Claims {
        sub: owner.sub.clone(),
        name: owner.name.clone(),
        role: owner.role,
        classes: owner.classes.clone(),
        children: owner.children.clone(),
        exp: owner.exp,
        iat: 0,
    };

    let mut calendar = Calendar::new();
    calendar
        .name(&format!("préau · {}", owner.name))
        .description("Agenda des classes et devoirs à faire (préau)")
        .timezone(&hub.config.timezone);
    for class in &claims.classes {
        agenda_items(hub, &claims, class, &tz, from, to, &mut calendar).await?;
        homework_items(hub, &claims, class, from, to, now, &mut calendar).await?;
    }
    Ok(calendar.done().to_string())
}

/// The class's agenda rooms' items in `[from, to]`.
async fn agenda_items(
    hub: &Arc<Hub>,
    claims: &Claims,
    class: &str,
    tz: &chrono_tz::Tz,
    from: NaiveDate,
    to: NaiveDate,
    calendar: &mut Calendar,
) -> Result<(), CalendarError> {
    let store = hub.store.clone();
    let prefix = format!("{class}/{}/", agenda::NAME);
    let names = tokio::task::spawn_blocking(move || store.rooms_with_prefix(&prefix))
        .await
        .map_err(HubError::from)?
        .map_err(HubError::from)?;
    let ms = |day: NaiveDate| {
        day.and_hms_opt(0, 0, 0)
            .and_then(|t| tz.from_local_datetime(&t).earliest())
            .map_or(0, |t| u64::try_from(t.timestamp_millis()).unwrap_or(0))
    };
    for name in names {
        let Ok(parsed) = hub.kinds.parse(&name) else {
            continue;
        };
        if !policy::allowed(claims, &parsed, None, Action::Read) {
            continue;
        }
        let room = hub.room(&parsed).await?;
        let (items, _) = room
            .with_state(|a: &mut agenda::State, _| a.between(ms(from), ms(to), PER_ROOM))
            .unwrap_or_default();
        hub.release(&room);
        for item in items {
            let mut event = icalendar::Event::new();
            event
                .uid(&format!("agenda-{name}-{}@preau", item.item))
                .summary(&item.title)
                .sequence(u32::try_from(item.version).unwrap_or(u32::MAX))
                .timestamp(utc(item.ts));
            if item.all_day {
                let first = utc(item.starts).with_timezone(tz).date_naive();
                let last = utc(item.ends.unwrap_or(item.starts))
                    .with_timezone(tz)
                    .date_naive();
                event
                    .starts(DatePerhapsTime::Date(first))
                    .ends(DatePerhapsTime::Date(last.succ_opt().unwrap_or(last)));
            } else {
                event.starts(utc(item.starts));
                event.ends(utc(item.ends.unwrap_or(item.starts)));
            }
            if let Some(place) = &item.place {
                event.location(place);
            }
            let mut description = format!("Classe {class}");
            if let Some(details) = &item.details {
                description = format!("{details}\n\n{description}");
            }
            if item.cancelled {
                event.status(EventStatus::Cancelled);
                description = format!(
                    "Annulé{}\n\n{description}",
                    item.reason
                        .as_deref()
                        .map(|r| format!(" : {r}"))
                        .unwrap_or_default()
                );
            }
            event.description(&description);
            calendar.push(event.done());
        }
    }
    Ok(())
}

/// The class's homework due in `[from, to]`, as all-day events on the due
/// day; a parent's are labelled with the children they are for.
async fn homework_items(
    hub: &Arc<Hub>,
    claims: &Claims,
    class: &str,
    from: NaiveDate,
    to: NaiveDate,
    now: u64,
    calendar: &mut Calendar,
) -> Result<(), CalendarError> {
    let Ok(name) = hub.kinds.parse(&homework::diary_of(class)) else {
        return Ok(());
    };
    if !policy::allowed(claims, &name, None, Action::Read) || !hub.room_exists(&name).await? {
        return Ok(());
    }
    let room = hub.room(&name).await?;
    let children: Vec<&crate::auth::Child> = claims
        .children
        .iter()
        .filter(|c| c.in_class(class))
        .collect();
    let ids: Vec<String> = children.iter().map(|c| c.id.clone()).collect();
    let user = claims.user_info();
    let reader = homework::state::Reader {
        user: &user,
        children: &ids,
        staff: false,
        counts: false,
        names: false,
    };
    let (entries, _) = room
        .with_state(|d: &mut homework::State, _| d.between(from, to, &reader, now, true, PER_ROOM))
        .unwrap_or_default();
    hub.release(&room);
    let label = children
        .iter()
        .map(|c| c.label())
        .collect::<Vec<_>>()
        .join(", ");
    for entry in entries {
        let Some(due) = entry.due else {
            continue;
        };
        let mut summary = format!("À faire : {} ({class})", entry.subject);
        if !label.is_empty() {
            summary = format!("{label} · {summary}");
        }
        let mut description = entry.text.clone();
        if let Some(minutes) = entry.minutes {
            description.push_str(&format!("\n\nTemps estimé : {minutes} min"));
        }
        for link in &entry.links {
            description.push_str(&format!("\n{link}"));
        }
        let mut event = icalendar::Event::new();
        event
            .uid(&format!("homework-{class}-{}@preau", entry.entry))
            .summary(&summary)
            .description(&description)
            .sequence(u32::try_from(entry.version).unwrap_or(u32::MAX))
            .timestamp(utc(entry.ts))
            .starts(DatePerhapsTime::Date(due))
            .ends(DatePerhapsTime::Date(due.succ_opt().unwrap_or(due)));
        calendar.push(event.done());
    }
    Ok(())
}

fn utc(ms: u64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(i64::try_from(ms).unwrap_or(i64::MAX))
        .single()
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}
