//! Direct messages and the notification feed (`protocol/README.md`,
//! "Direct messages", "Notification feed"): who may write to whom over
//! every role with the school's options on and off; a conversation live,
//! in order and recovered; unread counts; quiet hours on an injected
//! clock (nothing pushed during them, everything in the feed, one release
//! when they end); the pupils' caps; adding members; a report that lets
//! staff read a conversation, in writing; a question shared with the
//! class, anonymous unless the pupil agreed.

mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use preau::client::{Client, ClientError};
use preau::kinds::dm::{ConversationsOk, DmOk, DmRequest, SentOk, SharedOk};
use preau::kinds::inbox::{FeedOk, FeedRequest, QuietOk};
use preau::protocol::{Body, ErrorCode, Role, ServerFrame};
use serde_json::json;
use support::*;

/// Tuesday 2026-12-08, 10:00 in Paris (09:00 UTC).
const TUESDAY_10H: u64 = 1_796_806_800_000;
const HOUR: u64 = 3_600_000;

fn manual_clock(start: u64) -> (Arc<AtomicU64>, preau::hub::Clock) {
    let now = Arc::new(AtomicU64::new(start));
    let read = now.clone();
    (now, Arc::new(move || read.load(Ordering::SeqCst)))
}

async fn school_server(tweak: impl FnOnce(&mut preau::config::Config)) -> TestServer {
    school_server_with_clock(preau::hub::system_clock(), tweak).await
}

async fn school_server_with_clock(
    clock: preau::hub::Clock,
    tweak: impl FnOnce(&mut preau::config::Config),
) -> TestServer {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = config(dir.path());
    config.admin_key = Some(ADMIN_KEY.to_owned());
    tweak(&mut config);
    let server = preau::start_with_clock(config, clock)
        .await
        .expect("server starts");
    let server = TestServer { server, dir };
    sync_directory(server.addr(), &school()).await;
    server
}

/// 3B and 4A; Mme Durand teaches 3B, M. Bernard 4A; Léa and Inès in 3B,
/// Hugo in 4A; Léa's parent, Hugo's two parents; the principal.
fn school() -> serde_json::Value {
    json!({
        "version": 1, "mode": "full",
        "classes": [{"id": "3B", "level": "3e"}, {"id": "4A", "level": "4e"}],
        "people": [
            {"id": "durand", "name": "Mme Durand", "role": "teacher",
             "teaches": [{"class": "3B", "subject": "Mathématiques"}]},
            {"id": "bernard", "name": "M. Bernard", "role": "teacher",
             "teaches": [{"class": "4A", "subject": "Histoire"}]},
            {"id": "lea", "name": "Léa", "role": "student", "classes": ["3B"]},
            {"id": "ines", "name": "Inès", "role": "student", "classes": ["3B"]},
            {"id": "hugo", "name": "Hugo", "role": "student", "classes": ["4A"]},
            {"id": "p-lea", "name": "M. Martin", "role": "parent", "children": ["lea"]},
            {"id": "p-hugo", "name": "Mme Petit", "role": "parent", "children": ["hugo"]},
            {"id": "p-hugo2", "name": "M. Petit", "role": "parent", "children": ["hugo"]},
            {"id": "proviseur", "name": "M. le proviseur", "role": "staff"}
        ]
    })
}

/// A token for `id` (the directory fills in classes and children).
fn who(id: &str) -> String {
    let role = match id {
        "durand" | "bernard" => Role::Teacher,
        "lea" | "ines" | "hugo" => Role::Student,
        "p-lea" | "p-hugo" | "p-hugo2" => Role::Parent,
        _ => Role::Staff,
    };
    token(id, role, &[])
}

async fn start(client: &mut Client, to: &[&str]) -> Result<DmOk, ClientError> {
    client
        .request_kind(&DmRequest::DmStart {
            id: None,
            to: to.iter().map(|s| s.to_string()).collect(),
        })
        .await
}

async fn send(client: &mut Client, room: &str, text: &str) -> Result<SentOk, ClientError> {
    client
        .request_kind(&DmRequest::DmSend {
            id: None,
            room: room.to_owned(),
            text: text.to_owned(),
            key: None,
        })
        .await
}

async fn feed(client: &mut Client) -> FeedOk {
    client
        .request_kind(&FeedRequest::Feed {
            id: None,
            before: None,
            limit: None,
        })
        .await
        .expect("feed")
}

fn refused(result: Result<impl std::fmt::Debug, ClientError>) -> ErrorCode {
    match result {
        Err(ClientError::Refused(reply)) => reply.code,
        other => panic!("not refused: {other:?}"),
    }
}

/// Who may start a conversation with whom, every role against every
/// role, with pupil-to-pupil messages off (the default) and on.
#[tokio::test]
async fn who_may_write_to_whom() {
    // (from, to, allowed by default, allowed with dm_pupil_to_pupil)
    let matrix: &[(&str, &str, bool, bool)] = &[
        ("durand", "lea", true, true),      // teacher → pupil of their class
        ("durand", "hugo", false, false),   // … not of another class
        ("durand", "p-lea", true, true),    // teacher → parent of their pupil
        ("durand", "p-hugo", false, false), // … not of another class
        ("durand", "bernard", true, true),  // colleagues
        ("durand", "proviseur", true, true),
        ("lea", "durand", true, true),    // pupil → their teacher
        ("lea", "bernard", false, false), // … not another class's
        ("lea", "ines", false, true),     // pupil → classmate: the option
        ("lea", "hugo", false, false),    // … never another class
        ("lea", "p-lea", true, true),     // pupil → own parent
        ("lea", "p-hugo", false, false),
        ("lea", "proviseur", true, true),
        ("p-lea", "durand", true, true), // parent → child's teacher
        ("p-lea", "bernard", false, false),
        ("p-lea", "lea", true, true),      // parent → own child
        ("p-lea", "ines", false, false),   // never another pupil
        ("p-lea", "p-hugo", false, false), // not another family
        ("p-hugo", "p-hugo2", true, true), // the other parent
        ("p-lea", "proviseur", true, true),
        ("proviseur", "lea", true, true), // staff → anyone
        ("proviseur", "hugo", true, true),
        ("proviseur", "p-hugo", true, true),
        ("proviseur", "bernard", true, true),
    ];
    for pupils in [false, true] {
        let server = school_server(|c| c.dm_pupil_to_pupil = pupils).await;
        for &(from, to, default, with_option) in matrix {
            let allowed = if pupils { with_option } else { default };
            let mut client = client(&server.url(), &who(from)).await;
            let result = start(&mut client, &[to]).await;
            match (allowed, result) {
                (true, Ok(ok)) => assert_eq!(ok.members.len(), 2, "{from} → {to}"),
                (false, Err(ClientError::Refused(reply))) => {
                    assert_eq!(
                        reply.code,
                        ErrorCode::Forbidden,
                        "{from} → {to}: {}",
                        reply.message
                    )
                }
                (allowed, result) => {
                    panic!("{from} → {to} (pupils {pupils}): expected {allowed}, got {result:?}")
                }
            }
        }
        // The contacts a user is offered are exactly those they may write to.
        for &(from, _, _, _) in matrix {
            let mut client = client(&server.url(), &who(from)).await;
            let offered: preau::kinds::dm::ContactsOk = client
                .request_kind(&DmRequest::Contacts {
                    id: None,
                    query: None,
                    limit: None,
                })
                .await
                .unwrap();
            for &(f, to, default, with_option) in matrix.iter().filter(|m| m.0 == from) {
                let allowed = if pupils { with_option } else { default };
                assert_eq!(
                    offered.contacts.iter().any(|c| c.id == to),
                    allowed,
                    "{f} offered {to}? (pupils {pupils})"
                );
            }
        }
        let mut parent = client(&server.url(), &who("p-lea")).await;
        let found: preau::kinds::dm::ContactsOk = parent
            .request_kind(&DmRequest::Contacts {
                id: None,
                query: Some("DURAND".into()),
                limit: None,
            })
            .await
            .unwrap();
        assert_eq!(found.contacts.len(), 1);
        assert_eq!(found.contacts[0].about, vec!["3B · Mathématiques"]);
        // Someone the directory does not list.
        let mut lea = client(&server.url(), &who("lea")).await;
        assert_eq!(
            refused(start(&mut lea, &["nobody"]).await),
            ErrorCode::UnknownTarget
        );
    }
}

#[tokio::test]
async fn a_conversation_is_live_ordered_recovered_and_counted() {
    let (_, clock) = manual_clock(TUESDAY_10H);
    let server = school_server_with_clock(clock, |_| {}).await;
    let mut durand = client(&server.url(), &who("durand")).await;
    let mut lea = client(&server.url(), &who("lea")).await;
    // Léa watches her feed.
    let lea_feed = feed(&mut lea).await;
    assert_eq!(lea_feed.total_unread, 0);
    lea.join(&lea_feed.room, None).await.unwrap();

    let started = start(&mut durand, &["lea"]).await.unwrap();
    assert!(started.created);
    // Writing again to the same person reopens the same conversation.
    let again = start(&mut durand, &["lea"]).await.unwrap();
    assert_eq!(
        (again.room.as_str(), again.created),
        (started.room.as_str(), false)
    );
    let room = started.room.clone();
    // Nobody else may read it.
    let mut ines = client(&server.url(), &who("ines")).await;
    assert_eq!(refused(ines.join(&room, None).await), ErrorCode::Forbidden);

    let sent = send(&mut durand, &room, "Léa, as-tu compris l'exercice 3 ?")
        .await
        .unwrap();
    assert!(
        sent.held.is_empty(),
        "10:00 on a weekday is not quiet: {:?}",
        sent.held
    );
    // Léa is told live, in her feed.
    let notified = tokio::time::timeout(WAIT, async {
        loop {
            if let ServerFrame::Event(event) = next(&mut lea).await {
                if let Body::Kind(body) = &event.body {
                    if body.kind == "notify" {
                        return body.clone();
                    }
                }
            }
        }
    })
    .await
    .expect("notified live");
    assert_eq!(notified.fields["what"].as_str(), Some("dm"));
    let lea_feed = feed(&mut lea).await;
    assert_eq!(lea_feed.total_unread, 1);
    assert_eq!(lea_feed.unread.get(&room), Some(&1));

    // She opens the conversation and answers; the messages come in order.
    lea.join(&room, None).await.unwrap();
    let joined = lea.history(&room, None, None, None).await.unwrap();
    let texts: Vec<String> = joined
        .events
        .iter()
        .filter_map(|e| match &e.body {
            Body::Message { text, .. } => Some(text.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(texts, vec!["Léa, as-tu compris l'exercice 3 ?"]);
    for i in 0..5 {
        send(&mut lea, &room, &format!("réponse {i}"))
            .await
            .unwrap();
    }
    // The notifications follow the acks (each one stored once durable).
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let conversations: ConversationsOk = durand
            .request_kind(&DmRequest::Conversations { id: None })
            .await
            .unwrap();
        assert_eq!(conversations.conversations.len(), 1);
        if conversations.conversations[0].unread == 5 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{conversations:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The teacher reconnects from the start: every message, in order.
    let mut again = client(&server.url(), &who("durand")).await;
    again.join(&room, None).await.unwrap();
    let history = again.history(&room, None, None, None).await.unwrap();
    let texts: Vec<String> = history
        .events
        .iter()
        .filter_map(|e| match &e.body {
            Body::Message { text, .. } => Some(text.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(texts.len(), 6);
    assert_eq!(texts[5], "réponse 4");
    // Read: the count goes to zero.
    let _: preau::protocol::PostOk = durand
        .request_kind(&FeedRequest::FeedRead {
            id: None,
            room: Some(room.clone()),
            through: None,
        })
        .await
        .unwrap();
    assert_eq!(feed(&mut durand).await.total_unread, 0);
    // A post through the shared `post` is refused: dm_send notifies.
    assert_eq!(
        refused(again.post(&room, "x").await),
        ErrorCode::InvalidField
    );
}

#[tokio::test]
async fn quiet_hours_hold_and_release() {
    let (now, clock) = manual_clock(TUESDAY_10H + 11 * HOUR); // 21:00 Paris
    let server = school_server_with_clock(clock, |_| {}).await;
    let mut durand = client(&server.url(), &who("durand")).await;
    let mut lea = client(&server.url(), &who("lea")).await;
    let teacher_feed = feed(&mut durand).await;
    // The school's default for teachers: 20:00–07:00 and Sundays.
    assert!(!teacher_feed.quiet.own);
    let tomorrow_7h = TUESDAY_10H + 21 * HOUR;
    assert_eq!(teacher_feed.quiet.until, Some(tomorrow_7h));
    durand.join(&teacher_feed.room, None).await.unwrap();

    // 21:00: Léa writes; she is told her teacher will see it at 07:00.
    let started = start(&mut lea, &["durand"]).await.unwrap();
    assert_eq!(started.quiet.len(), 1);
    assert_eq!(started.quiet[0].until, tomorrow_7h);
    let sent = send(&mut lea, &started.room, "Madame, je n'ai pas compris")
        .await
        .unwrap();
    assert_eq!(sent.held.len(), 1);
    assert_eq!(sent.held[0].until, tomorrow_7h);
    // Nothing is pushed to the teacher.
    let pushed = tokio::time::timeout(Duration::from_millis(1500), async {
        loop {
            if let ServerFrame::Event(event) = next(&mut durand).await {
                if let Body::Kind(body) = &event.body {
                    if body.kind == "notify" || body.kind == "feed_release" {
                        return body.kind.clone();
                    }
                }
            }
        }
    })
    .await;
    assert!(pushed.is_err(), "pushed during quiet hours: {pushed:?}");
    // It waits in the feed, marked held.
    let held = feed(&mut durand).await;
    let dm: Vec<_> = held
        .items
        .iter()
        .filter(|i| i.fields.what == "dm")
        .collect();
    assert_eq!(dm.len(), 1);
    assert_eq!(dm[0].fields.hold_until, Some(tomorrow_7h));

    // 07:00: one release is pushed, and the feed has it all.
    now.store(tomorrow_7h, Ordering::SeqCst);
    let released = tokio::time::timeout(WAIT, async {
        loop {
            if let ServerFrame::Event(event) = next(&mut durand).await {
                if let Body::Kind(body) = &event.body {
                    if body.kind == "feed_release" {
                        return body.clone();
                    }
                }
            }
        }
    })
    .await
    .expect("released at 07:00");
    assert_eq!(released.fields["count"].as_u64(), Some(1));
    assert_eq!(feed(&mut durand).await.total_unread, 1);

    // A teacher who wants no quiet hours says so; then messages are pushed.
    let set: preau::protocol::PostOk = durand
        .request_kind(&FeedRequest::QuietHours {
            id: None,
            hours: Some(preau::quiet::QuietHours::none()),
            default: false,
        })
        .await
        .unwrap();
    assert!(set.offset > 0);
    now.store(tomorrow_7h + 15 * HOUR, Ordering::SeqCst); // 22:00
    let quiet: QuietOk = durand
        .request_kind(&FeedRequest::QuietHours {
            id: None,
            hours: None,
            default: false,
        })
        .await
        .unwrap();
    assert!(quiet.own && quiet.until.is_none());
    let sent = send(&mut lea, &started.room, "Merci !").await.unwrap();
    assert!(sent.held.is_empty());
    // Bad hours are refused.
    let bad = durand
        .request_kind::<preau::protocol::PostOk>(&FeedRequest::QuietHours {
            id: None,
            hours: Some(preau::quiet::QuietHours {
                start: "25:00".into(),
                end: "07:00".into(),
                days: vec![],
            }),
            default: false,
        })
        .await;
    assert_eq!(refused(bad), ErrorCode::InvalidField);
}

#[tokio::test]
async fn a_pupil_writing_to_a_teacher_is_bounded() {
    let (now, clock) = manual_clock(TUESDAY_10H);
    let server = school_server_with_clock(clock, |c| {
        c.dm_pupil_per_hour = 3;
        c.dm_pupil_per_day = 5;
    })
    .await;
    let mut lea = client(&server.url(), &who("lea")).await;
    let room = start(&mut lea, &["durand"]).await.unwrap().room;
    for i in 0..3 {
        send(&mut lea, &room, &format!("question {i}"))
            .await
            .unwrap();
    }
    let Err(ClientError::Refused(reply)) = send(&mut lea, &room, "encore").await else {
        panic!("not capped");
    };
    assert_eq!(reply.code, ErrorCode::RateLimited);
    assert!(
        reply.retry_after_ms.is_some_and(|ms| ms <= HOUR),
        "{reply:?}"
    );
    now.fetch_add(HOUR, Ordering::SeqCst);
    send(&mut lea, &room, "question 3").await.unwrap();
    send(&mut lea, &room, "question 4").await.unwrap();
    now.fetch_add(HOUR, Ordering::SeqCst);
    assert_eq!(
        refused(send(&mut lea, &room, "question 5").await),
        ErrorCode::RateLimited
    );
    // The teacher is not capped.
    let mut durand = client(&server.url(), &who("durand")).await;
    for i in 0..6 {
        send(&mut durand, &room, &format!("réponse {i}"))
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn members_are_added_by_the_rules() {
    let server = school_server(|_| {}).await;
    let mut lea = client(&server.url(), &who("lea")).await;
    let room = start(&mut lea, &["durand"]).await.unwrap().room;
    let add = |users: &[&str]| DmRequest::DmAdd {
        id: None,
        room: room.clone(),
        users: users.iter().map(|s| s.to_string()).collect(),
    };
    // A pupil adds her parent, not a classmate.
    assert_eq!(
        refused(lea.request_kind::<DmOk>(&add(&["ines"])).await),
        ErrorCode::Forbidden
    );
    let added: DmOk = lea.request_kind(&add(&["p-lea"])).await.unwrap();
    assert_eq!(added.members.len(), 3);
    // The teacher adds a colleague.
    let mut durand = client(&server.url(), &who("durand")).await;
    let added: DmOk = durand.request_kind(&add(&["bernard"])).await.unwrap();
    assert_eq!(added.members.len(), 4);
    // The parent now reads the conversation and sees it in her list.
    let mut parent = client(&server.url(), &who("p-lea")).await;
    parent.join(&room, None).await.unwrap();
    let list: ConversationsOk = parent
        .request_kind(&DmRequest::Conversations { id: None })
        .await
        .unwrap();
    assert_eq!(list.conversations.len(), 1);
    assert_eq!(list.conversations[0].members.len(), 4);
    // Someone not in it can neither read nor add.
    let mut ines = client(&server.url(), &who("ines")).await;
    assert_eq!(
        refused(ines.request_kind::<DmOk>(&add(&["ines"])).await),
        ErrorCode::Forbidden
    );
}

#[tokio::test]
async fn staff_read_a_conversation_only_after_a_report_and_say_so() {
    let server = school_server(|_| {}).await;
    let mut lea = client(&server.url(), &who("lea")).await;
    let mut durand = client(&server.url(), &who("durand")).await;
    let room = start(&mut durand, &["lea"]).await.unwrap().room;
    let sent = send(&mut durand, &room, "un message déplacé")
        .await
        .unwrap();
    let mut staff = client(&server.url(), &who("proviseur")).await;
    let review = DmRequest::DmReview {
        id: None,
        room: room.clone(),
    };
    // No report yet: staff may not read it.
    assert_eq!(refused(staff.join(&room, None).await), ErrorCode::Forbidden);
    assert_eq!(
        refused(staff.request_kind::<DmOk>(&review).await),
        ErrorCode::Forbidden
    );
    // Léa reports the message.
    lea.join(&room, None).await.unwrap();
    let _: serde_json::Value = lea
        .request(preau::protocol::Request::Report {
            id: None,
            room: room.clone(),
            offset: sent.offset,
            reason: Some("ça me met mal à l'aise".into()),
        })
        .await
        .unwrap();
    let reviewed: DmOk = staff.request_kind(&review).await.unwrap();
    assert_eq!(reviewed.members.len(), 2);
    staff.join(&room, None).await.unwrap();
    let history = staff.history(&room, None, None, None).await.unwrap();
    assert!(
        history
            .events
            .iter()
            .any(|e| matches!(&e.body, Body::Message { text, .. } if text == "un message déplacé")),
        "{:?}",
        history.events
    );
    assert!(history
        .events
        .iter()
        .any(|e| matches!(&e.body, Body::Message { text, .. } if text == "un message déplacé")));
    // The members see that staff read it.
    let written = tokio::time::timeout(WAIT, async {
        loop {
            if let ServerFrame::Event(event) = next(&mut lea).await {
                if let Body::Kind(body) = &event.body {
                    if body.kind == "dm_reviewed" {
                        return event.from.id.clone();
                    }
                }
            }
        }
    })
    .await
    .expect("members told");
    assert_eq!(written, "proviseur");
    // Staff still cannot write in it.
    assert_eq!(
        refused(send(&mut staff, &room, "x").await),
        ErrorCode::Forbidden
    );
}

#[tokio::test]
async fn a_question_is_answered_for_the_whole_class() {
    let server = school_server(|_| {}).await;
    let staff = who("proviseur");
    open_rooms_as(
        &server.url(),
        &staff,
        &["3B/forum/aide", "3B/forum/debat", "4A/forum/aide"],
    )
    .await;
    let mut principal = client(&server.url(), &staff).await;
    for forum in ["3B/forum/aide", "4A/forum/aide"] {
        principal
            .moderate(
                forum,
                preau::protocol::ModAction::Configure {
                    flavour: preau::protocol::Flavour::Help,
                    classes: Vec::new(),
                    moderators: Vec::new(),
                },
            )
            .await
            .expect("configured as a help forum");
    }
    let mut lea = client(&server.url(), &who("lea")).await;
    let room = start(&mut lea, &["durand"]).await.unwrap().room;
    let question = send(&mut lea, &room, "Comment factoriser x² - 9 ?")
        .await
        .unwrap();
    let mut durand = client(&server.url(), &who("durand")).await;
    let share = |at: u64| DmRequest::DmShare {
        id: None,
        room: room.clone(),
        at,
        forum: "3B/forum/aide".into(),
        title: None,
    };
    let shared: SharedOk = durand.request_kind(&share(question.offset)).await.unwrap();
    assert!(shared.anonymous, "anonymous unless the pupil agreed");
    // The class sees the question, without Léa's name.
    let mut ines = client(&server.url(), &who("ines")).await;
    ines.join("3B/forum/aide", None).await.unwrap();
    let page: preau::protocol::HistoryOk = ines
        .request(preau::protocol::Request::History {
            id: None,
            room: "3B/forum/aide".into(),
            before: None,
            after: None,
            limit: None,
            thread: Some(shared.thread),
        })
        .await
        .unwrap();
    let thread = page
        .events
        .iter()
        .find(|e| e.offset == shared.thread)
        .expect("the thread");
    match &thread.body {
        Body::Message { text, title, .. } => {
            assert_eq!(text, "Comment factoriser x² - 9 ?");
            assert_eq!(title.as_deref(), Some("Question d'un élève"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(thread.from.id, "durand");
    // Léa agrees to her name; the next question says it.
    let _: preau::protocol::PostOk = lea
        .request_kind(&DmRequest::DmPrefs {
            id: None,
            room: room.clone(),
            named: true,
        })
        .await
        .unwrap();
    let second = send(&mut lea, &room, "Et x² + 6x + 9 ?").await.unwrap();
    let shared: SharedOk = durand.request_kind(&share(second.offset)).await.unwrap();
    assert!(!shared.anonymous);
    // Only to a help forum of the pupil's classes.
    for forum in ["3B/forum/debat", "4A/forum/aide"] {
        let elsewhere = DmRequest::DmShare {
            id: None,
            room: room.clone(),
            at: second.offset,
            forum: forum.into(),
            title: None,
        };
        assert_eq!(
            refused(durand.request_kind::<SharedOk>(&elsewhere).await),
            ErrorCode::Forbidden,
            "{forum}"
        );
    }
    // Only a pupil's message may be shared, and only by a teacher.
    let own = send(&mut durand, &room, "Bonne question").await.unwrap();
    assert_eq!(
        refused(durand.request_kind::<SharedOk>(&share(own.offset)).await),
        ErrorCode::UnknownTarget
    );
    assert_eq!(
        refused(lea.request_kind::<SharedOk>(&share(second.offset)).await),
        ErrorCode::Forbidden
    );
}

/// Erasing a pupil takes their messages off the disk, empties their feed
/// and takes the notifications naming them out of the teacher's; the
/// teacher keeps the conversation and their own messages.
#[tokio::test]
async fn erasing_a_pupil_takes_their_messages_and_notifications() {
    let (_, clock) = manual_clock(TUESDAY_10H);
    let server = school_server_with_clock(clock, |_| {}).await;
    let mut lea = client(&server.url(), &who("lea")).await;
    let mut durand = client(&server.url(), &who("durand")).await;
    let room = start(&mut lea, &["durand"]).await.unwrap().room;
    send(&mut lea, &room, "mon secret zanzibar").await.unwrap();
    send(&mut durand, &room, "réponse du professeur")
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    while feed(&mut durand).await.total_unread == 0 {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    lea.close();
    // Her export holds what she wrote and her feed (the teacher's reply
    // notified there).
    let auth = format!("Bearer {ADMIN_KEY}");
    let (status, body) = http_request(
        server.addr(),
        "GET",
        "/admin/users/lea/export",
        &[("Authorization", &auth)],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let export: serde_json::Value = serde_json::from_str(&body).unwrap();
    let written = export["written"].to_string();
    assert!(written.contains("mon secret zanzibar"), "{written}");
    let about = export["about"].as_array().unwrap();
    assert!(
        about
            .iter()
            .any(|e| e["body"]["kind"] == "notify" && e["body"]["what"] == "dm"),
        "{about:?}"
    );
    let erased = admin_erase(server.addr(), "lea").await;
    assert!(erased["redacted"].as_u64().unwrap_or(0) >= 3, "{erased}");
    assert_eq!(
        erased["kept"].as_u64(),
        Some(1),
        "the member list: {erased}"
    );
    // Not on disk any more.
    let found = preau::store::find_in_data(server.dir.path(), &["mon secret zanzibar"]).unwrap();
    assert!(found.is_empty(), "{found:?}");
    // The teacher's feed has no notification by her; the conversation and
    // the teacher's own message stay.
    let teacher_feed = feed(&mut durand).await;
    assert!(
        teacher_feed
            .items
            .iter()
            .all(|i| i.fields.by.as_ref().is_none_or(|b| b.id != "lea")),
        "{teacher_feed:?}"
    );
    let history = durand.history(&room, None, None, None).await.unwrap();
    assert!(history
        .events
        .iter()
        .any(|e| matches!(&e.body, Body::Message { text, .. } if text == "réponse du professeur")));
    assert!(!history
        .events
        .iter()
        .any(|e| matches!(&e.body, Body::Message { text, .. } if text.contains("zanzibar"))));
}

/// New homework reaches the feeds of the class's pupils and their
/// parents (from the directory), nobody else's.
#[tokio::test]
async fn new_homework_reaches_the_class_and_its_parents() {
    let (_, clock) = manual_clock(TUESDAY_10H);
    let server = school_server_with_clock(clock, |_| {}).await;
    let mut durand = client(&server.url(), &who("durand")).await;
    durand.join("3B/homework/diary", None).await.unwrap();
    let written: preau::protocol::PostOk = durand
        .request_kind(&preau::kinds::homework::HomeworkRequest::HomeworkWrite {
            id: None,
            room: "3B/homework/diary".into(),
            entry: None,
            what: preau::kinds::homework::What::Homework,
            subject: "Mathématiques".into(),
            text: "Exercices 3 et 4 page 52\nRédiger proprement.".into(),
            date: "2026-12-08".into(),
            due: Some("2026-12-10".into()),
            minutes: Some(30),
            links: Vec::new(),
            publish_at: None,
            key: None,
        })
        .await
        .unwrap();
    for (user, told) in [
        ("lea", true),
        ("ines", true),
        ("p-lea", true),
        ("hugo", false),
        ("p-hugo", false),
    ] {
        let mut client = client(&server.url(), &who(user)).await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(if told { 10 } else { 1 });
        let item = loop {
            let feed = feed(&mut client).await;
            if let Some(item) = feed.items.into_iter().find(|i| i.fields.what == "homework") {
                break Some(item);
            }
            if tokio::time::Instant::now() > deadline {
                break None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!(item.is_some(), told, "{user}");
        if let Some(item) = item {
            assert_eq!(item.fields.room, "3B/homework/diary");
            assert_eq!(item.fields.at, Some(written.offset));
            assert_eq!(
                item.fields.title,
                "Mathématiques : Exercices 3 et 4 page 52"
            );
        }
    }
}

/// A conversation across two nodes: each member on their own node, one
/// order on both, notifications live on the other node.
#[tokio::test]
async fn a_conversation_across_two_nodes() {
    let redis = support::redis::RedisServer::start().await;
    let (_, clock) = manual_clock(TUESDAY_10H);
    let node = |id: &'static str| {
        let (url, clock) = (redis.url(), clock.clone());
        async move {
            let dir = tempfile::tempdir().expect("temp dir");
            let mut config = config(dir.path());
            config.admin_key = Some(ADMIN_KEY.to_owned());
            config.redis = Some(url);
            config.node_id = id.to_owned();
            let server = preau::start_with_clock(config, clock)
                .await
                .expect("starts");
            TestServer { server, dir }
        }
    };
    let a = node("a").await;
    let b = node("b").await;
    sync_directory(a.addr(), &school()).await;
    // b takes the directory through Redis (until then, tokens alone
    // decide, and taking it closes every session).
    let auth = format!("Bearer {ADMIN_KEY}");
    let deadline = tokio::time::Instant::now() + WAIT;
    let version = |body: String| {
        serde_json::from_str::<serde_json::Value>(&body)
            .map_or(0, |v| v["version"].as_u64().unwrap_or(0))
    };
    while version(
        http_request(
            b.addr(),
            "GET",
            "/admin/directory",
            &[("Authorization", &auth)],
        )
        .await
        .1,
    ) != 1
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "b never took the directory"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut durand = client(&b.url(), &who("durand")).await;
    let teacher_feed = feed(&mut durand).await;
    durand.join(&teacher_feed.room, None).await.unwrap();
    let mut lea = client(&a.url(), &who("lea")).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    let room = loop {
        match start(&mut lea, &["durand"]).await {
            Ok(ok) => break ok.room,
            Err(ClientError::Refused(reply))
                if reply.code == ErrorCode::Unavailable
                    && tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(err) => panic!("{err}"),
        }
    };
    send(&mut lea, &room, "question 1").await.unwrap();
    // Told live on b.
    tokio::time::timeout(WAIT, async {
        loop {
            if let ServerFrame::Event(event) = next(&mut durand).await {
                if matches!(&event.body, Body::Kind(b) if b.kind == "notify") {
                    return;
                }
            }
        }
    })
    .await
    .expect("notified on the other node");
    send(&mut durand, &room, "réponse 1").await.unwrap();
    send(&mut lea, &room, "question 2").await.unwrap();
    // One order, on both nodes.
    let texts = |events: &[preau::protocol::Event]| -> Vec<String> {
        events
            .iter()
            .filter_map(|e| match &e.body {
                Body::Message { text, .. } => Some(text.clone()),
                _ => None,
            })
            .collect()
    };
    for client in [&mut lea, &mut durand] {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let history = client.history(&room, None, None, None).await.unwrap();
            let got = texts(&history.events);
            if got.len() == 3 {
                assert_eq!(got, vec!["question 1", "réponse 1", "question 2"]);
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "{got:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A reply in a forum thread tells the thread's author, not the one who
/// replies.
#[tokio::test]
async fn a_reply_tells_the_threads_author() {
    let (_, clock) = manual_clock(TUESDAY_10H);
    let server = school_server_with_clock(clock, |_| {}).await;
    open_rooms_as(&server.url(), &who("proviseur"), &["3B/forum/debat"]).await;
    let mut durand = client(&server.url(), &who("durand")).await;
    durand.join("3B/forum/debat", None).await.unwrap();
    let thread: preau::protocol::PostOk = durand
        .request(preau::protocol::Request::Post {
            id: None,
            room: "3B/forum/debat".into(),
            text: "Faut-il des devoirs le week-end ?".into(),
            title: Some("Devoirs le week-end".into()),
            thread: None,
            reply_to: None,
            quote: None,
            key: None,
        })
        .await
        .unwrap();
    let reply_in = |text: &str| preau::protocol::Request::Post {
        id: None,
        room: "3B/forum/debat".into(),
        text: text.into(),
        title: None,
        thread: Some(thread.offset),
        reply_to: None,
        quote: None,
        key: Some("r1".into()),
    };
    // Her own reply does not notify her.
    let _: preau::protocol::PostOk = durand
        .request(reply_in("Je précise : pendant les vacances aussi."))
        .await
        .unwrap();
    let mut ines = client(&server.url(), &who("ines")).await;
    ines.join("3B/forum/debat", None).await.unwrap();
    let _: preau::protocol::PostOk = ines.request(reply_in("Non !")).await.unwrap();
    // A retry with the same key: stored once, told once.
    let _: preau::protocol::PostOk = ines.request(reply_in("Non !")).await.unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    let replies = loop {
        let replies: Vec<_> = feed(&mut durand)
            .await
            .items
            .into_iter()
            .filter(|i| i.fields.what == "reply")
            .collect();
        if !replies.is_empty() || tokio::time::Instant::now() > deadline {
            break replies;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let replies_now = feed(&mut durand)
        .await
        .items
        .into_iter()
        .filter(|i| i.fields.what == "reply")
        .count();
    assert_eq!((replies.len(), replies_now), (1, 1), "{replies:?}");
    assert_eq!(replies[0].fields.title, "Devoirs le week-end");
    assert_eq!(replies[0].fields.at, Some(thread.offset));
    assert_eq!(
        replies[0].fields.by.as_ref().map(|b| b.id.as_str()),
        Some("ines")
    );
}

/// `@` names someone of the class in a chat: they are told (without the
/// words), others are not; a validated note tells the class's pupils.
#[tokio::test]
async fn mentions_and_validated_notes_are_notified() {
    let (_, clock) = manual_clock(TUESDAY_10H);
    let server = school_server_with_clock(clock, |_| {}).await;
    open_rooms_as(
        &server.url(),
        &who("proviseur"),
        &["3B/chat/revision", "3B/notes/chapitre-3"],
    )
    .await;
    let mut lea = client(&server.url(), &who("lea")).await;
    lea.join("3B/chat/revision", None).await.unwrap();
    lea.post("3B/chat/revision", "@Inès tu as la correction ? et @hugo ?")
        .await
        .unwrap();
    let wait_for = |user: &'static str, what: &'static str| {
        let url = server.url();
        async move {
            let mut client = client(&url, &who(user)).await;
            let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
            loop {
                let items: Vec<_> = feed(&mut client)
                    .await
                    .items
                    .into_iter()
                    .filter(|i| i.fields.what == what)
                    .collect();
                if !items.is_empty() || tokio::time::Instant::now() > deadline {
                    return items;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    let ines = wait_for("ines", "mention").await;
    assert_eq!(ines.len(), 1);
    assert_eq!(ines[0].fields.room, "3B/chat/revision");
    assert_eq!(ines[0].fields.title, "");
    assert_eq!(
        ines[0].fields.by.as_ref().map(|b| b.id.as_str()),
        Some("lea")
    );
    // Hugo is not in 3B: naming him there tells him nothing.
    assert!(wait_for("hugo", "mention").await.is_empty());

    let mut durand = client(&server.url(), &who("durand")).await;
    durand.join("3B/notes/chapitre-3", None).await.unwrap();
    durand
        .moderate(
            "3B/notes/chapitre-3",
            preau::protocol::ModAction::Validate {
                label: "Version corrigée".into(),
                lock: false,
            },
        )
        .await
        .unwrap();
    for pupil in ["lea", "ines"] {
        let notes = wait_for(pupil, "note").await;
        assert_eq!(notes.len(), 1, "{pupil}");
        assert_eq!(notes[0].fields.title, "Note validée : Version corrigée");
    }
    assert!(wait_for("hugo", "note").await.is_empty());
}
