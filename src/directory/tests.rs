use super::*;
use crate::store::{Store, StoreOptions};

fn person(id: &str, role: Role, classes: &[&str]) -> Person {
    Person {
        id: id.into(),
        name: format!("Nom {id}"),
        role,
        classes: classes.iter().map(|c| c.to_string()).collect(),
        teaches: Vec::new(),
        children: Vec::new(),
    }
}

fn class(id: &str, level: &str, group: bool) -> Class {
    Class {
        id: id.into(),
        name: None,
        level: Some(level.into()),
        group,
    }
}

fn school(version: u64) -> Sync {
    let mut teacher = person("t1", Role::Teacher, &[]);
    teacher.teaches = vec![Teaching {
        class: "3B".into(),
        subject: "Mathématiques".into(),
    }];
    let mut parent = person("p1", Role::Parent, &[]);
    parent.children = vec!["e1".into()];
    Sync {
        version,
        mode: Mode::Full,
        base: None,
        people: vec![
            person("e1", Role::Student, &["3B", "ESP"]),
            person("e2", Role::Student, &["3A"]),
            teacher,
            parent,
            person("s1", Role::Staff, &[]),
        ],
        classes: vec![
            class("3A", "3e", false),
            class("3B", "3e", false),
            class("ESP", "3e", true),
        ],
        remove: Removals::default(),
    }
}

fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreOptions::default(), |_| {}).unwrap();
    (dir, store)
}

#[test]
fn access_follows_the_directory() {
    let (_dir, store) = store();
    let directory = Directory::open(&store).unwrap();
    assert!(!directory.current().active());
    let applied = directory.apply(&store, school(1)).unwrap();
    assert!(applied.applied);
    let index = directory.current();
    assert_eq!(index.access("e1").unwrap().classes, vec!["3B", "ESP"]);
    assert_eq!(index.access("t1").unwrap().classes, vec!["3B"]);
    let parent = index.access("p1").unwrap();
    assert_eq!(parent.classes, vec!["3B", "ESP"]);
    assert_eq!(parent.children[0].id, "e1");
    assert_eq!(parent.children[0].name.as_deref(), Some("Nom e1"));
    assert_eq!(
        index
            .parents_of("e1")
            .map(|p| p.id.as_str())
            .collect::<Vec<_>>(),
        ["p1"]
    );
    assert_eq!(index.pupils_of("ESP").count(), 1);
    assert_eq!(index.classes_of_level("3e").len(), 3);
    // Stored: a reopened directory is the same.
    let reopened = Directory::open(&store).unwrap();
    assert_eq!(reopened.current().version(), 1);
    assert_eq!(reopened.current().access("p1"), index.access("p1"));
}

#[test]
fn a_retry_is_a_no_op_and_a_different_same_version_a_conflict() {
    let (_dir, store) = store();
    let directory = Directory::open(&store).unwrap();
    directory.apply(&store, school(3)).unwrap();
    let again = directory.apply(&store, school(3)).unwrap();
    assert!(!again.applied);
    let mut other = school(3);
    other.people.pop();
    assert!(matches!(
        directory.apply(&store, other),
        Err(DirectoryError::Conflict { current: 3, .. })
    ));
    assert!(matches!(
        directory.apply(&store, school(2)),
        Err(DirectoryError::Conflict { .. })
    ));
}

#[test]
fn a_delta_needs_its_base_and_reports_who_changed() {
    let (_dir, store) = store();
    let directory = Directory::open(&store).unwrap();
    directory.apply(&store, school(1)).unwrap();
    let mut moved = person("e1", Role::Student, &["3A"]);
    moved.name = "Nom e1".into();
    let delta = Sync {
        version: 2,
        mode: Mode::Delta,
        base: Some(1),
        people: vec![moved],
        classes: Vec::new(),
        remove: Removals {
            people: vec!["e2".into()],
            classes: Vec::new(),
        },
    };
    let mut stale = delta.clone();
    stale.base = Some(0);
    assert!(matches!(
        directory.apply(&store, stale),
        Err(DirectoryError::Conflict { .. })
    ));
    let applied = directory.apply(&store, delta).unwrap();
    // e1 moved, their parent's classes follow, e2 left.
    assert_eq!(applied.changed, vec!["e1", "e2", "p1"]);
    let index = directory.current();
    assert!(index.person("e2").is_none());
    assert_eq!(index.access("p1").unwrap().classes, vec!["3A"]);
    assert_eq!(index.person("t1").map(|p| p.id.as_str()), Some("t1"));
}

#[test]
fn an_invalid_sync_changes_nothing_and_says_where() {
    let (_dir, store) = store();
    let directory = Directory::open(&store).unwrap();
    directory.apply(&store, school(1)).unwrap();
    let mut bad = school(2);
    bad.people[0].classes = vec!["ESP".into()]; // a group first
    bad.people[3].children = vec!["t1".into()]; // not a pupil
    bad.people.push(person("e1", Role::Student, &["3A"])); // twice
    bad.classes.push(class("_", "3e", false)); // reserved
    let Err(DirectoryError::Invalid(problems)) = directory.apply(&store, bad) else {
        panic!("accepted");
    };
    let at: Vec<&str> = problems.iter().map(|p| p.at.as_str()).collect();
    assert!(at.contains(&"people[5].id"), "{at:?}");
    assert!(at.contains(&"classes[3].id"), "{at:?}");
    assert!(at.iter().any(|a| a.ends_with("children[0]")), "{at:?}");
    assert_eq!(directory.current().version(), 1);
    assert_eq!(Directory::open(&store).unwrap().current().version(), 1);
    // Removing a class someone is still in.
    let delta = Sync {
        version: 2,
        mode: Mode::Delta,
        base: None,
        people: Vec::new(),
        classes: Vec::new(),
        remove: Removals {
            people: Vec::new(),
            classes: vec!["3B".into()],
        },
    };
    assert!(matches!(
        directory.apply(&store, delta),
        Err(DirectoryError::Invalid(_))
    ));
}

#[test]
fn tokens_meet_the_directory() {
    let (_dir, store) = store();
    let directory = Directory::open(&store).unwrap();
    let claims = |sub: &str, role: Role, classes: &[&str]| Claims {
        sub: sub.into(),
        name: "X".into(),
        role,
        classes: classes.iter().map(|c| c.to_string()).collect(),
        children: Vec::new(),
        exp: u64::MAX,
        iat: 0,
    };
    // Before the first sync, the token decides.
    let token = claims("e1", Role::Student, &["4C"]);
    assert_eq!(directory.current().claims_for(&token).unwrap(), token);
    directory.apply(&store, school(1)).unwrap();
    let index = directory.current();
    assert_eq!(index.claims_for(&token).unwrap().classes, vec!["3B", "ESP"]);
    assert_eq!(
        index.claims_for(&claims("e9", Role::Student, &["3B"])),
        Err(Refused::Unknown("e9".into()))
    );
    assert!(matches!(
        index.claims_for(&claims("e1", Role::Teacher, &["3B"])),
        Err(Refused::Role { .. })
    ));
    let parent = index.claims_for(&claims("p1", Role::Parent, &[])).unwrap();
    assert_eq!(parent.children[0].classes, vec!["3B", "ESP"]);
}

#[test]
fn csv_files_become_full_syncs() {
    let csv = "\u{feff}id;rôle;nom;classes;enseigne;enfants;niveau\n\
               e1;élève;Léa Martin;3B|ESP;;;3e\n\
               e2;eleve;Hugo Petit;3A;;;3e\n\
               t1;enseignant;Mme Durand;;3B:Mathématiques|ESP:Espagnol;;\n\
               p1;parent;M. Martin;;;e1;\n\
               s1;personnel;M. Proviseur;;;;\n";
    let sync = parse_file(csv.as_bytes(), 7).unwrap();
    assert_eq!(sync.version, 7);
    assert_eq!(sync.mode, Mode::Full);
    assert_eq!(sync.people.len(), 5);
    let esp = sync.classes.iter().find(|c| c.id == "ESP").unwrap();
    assert!(esp.group);
    let b = sync.classes.iter().find(|c| c.id == "3B").unwrap();
    assert_eq!((b.group, b.level.as_deref()), (false, Some("3e")));
    let (_dir, store) = store();
    let directory = Directory::open(&store).unwrap();
    directory.apply(&store, sync).unwrap();
    assert_eq!(
        directory.current().access("t1").unwrap().classes,
        vec!["3B", "ESP"]
    );
    assert!(matches!(
        parse_file(b"id,role,name\ne1,pilot,X\n", 1),
        Err(ImportError::Row { line: 2, .. })
    ));
    assert!(matches!(
        parse_file(b"nom,role\n", 1),
        Err(ImportError::Column("id"))
    ));
    let json = br#"{"mode":"full","people":[],"classes":[]}"#;
    assert_eq!(parse_file(json, 4).unwrap().version, 4);
}
