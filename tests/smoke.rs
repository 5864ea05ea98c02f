mod support;

use preau::protocol::Role;
use support::*;

#[tokio::test]
async fn post_is_acked_and_delivered_to_members() {
    let server = TestServer::start().await;
    let room = "3B/chat/revision-bac";
    let (mut ana, hello) = server.connect(&student("ana", "3B")).await;
    assert_eq!(hello.user.role, Role::Student);
    let (mut prof, _) = server.connect(&teacher("prof", "3B")).await;
    // The teacher opens the room; then the pupil joins it.
    prof.join(room, None).await.unwrap();
    let joined = ana.join(room, None).await.unwrap();
    assert_eq!(joined.head, 0);
    let ack = ana.post(room, "bonjour").await.unwrap();
    assert_eq!(ack.offset, 1);
    let event = next_event(&mut prof).await;
    assert_eq!((event.offset, event.from.id.as_str()), (1, "ana"));
    let event = next_event(&mut ana).await;
    assert_eq!(event.offset, 1);
    let page = prof.history(room, None, None, None).await.unwrap();
    assert_eq!(page.events.len(), 1);
    assert_eq!(page.events[0].epoch, joined.epoch);
}
