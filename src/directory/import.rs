//! `preau directory import FILE`: a school without an ENT back end keeps
//! its directory in a spreadsheet. The file is a JSON sync (the admin
//! API's body) or a CSV of people, one row each, which becomes a full
//! sync (whoever the file leaves out is removed).
//!
//! CSV columns (header row required; `,` or `;`, as French spreadsheets
//! export; column names in English or French):
//!
//! | column | meaning |
//! |---|---|
//! | `id` | the ENT's user id (what tokens carry in `sub`) |
//! | `role` (`rôle`) | `student`/`élève`, `teacher`/`enseignant`, `parent`, `staff`/`personnel` |
//! | `name` (`nom`) | the name shown |
//! | `classes` | a pupil's class, then their groups, separated by `\|` (`3B\|ESP-LV2`) |
//! | `teaches` (`enseigne`) | a teacher's classes with the subject: `3B:Mathématiques\|4A:Mathématiques` |
//! | `children` (`enfants`) | a parent's children's ids: `e1\|e2` |
//! | `level` (`niveau`) | on a pupil's row, the level of their class (`3e`) |
//!
//! A class is what some pupil has first; every other class named is a
//! group.

use std::collections::BTreeMap;

use super::model::{Class, Mode, Person, Removals, Sync, Teaching};

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("line {line}: {message}")]
    Row { line: u64, message: String },
    #[error("not a directory sync: {0}")]
    Json(String),
    #[error("CSV: {0}")]
    Csv(String),
    #[error("the CSV has no {0:?} column")]
    Column(&'static str),
}

/// The sync a file describes, at `version`: JSON if it starts with `{`,
/// CSV otherwise. A JSON sync keeps its own version unless it has none.
pub fn parse_file(bytes: &[u8], version: u64) -> Result<Sync, ImportError> {
    let text = String::from_utf8_lossy(bytes);
    let trimmed = text.trim_start_matches('\u{feff}').trim_start();
    if trimmed.starts_with('{') {
        let mut value: serde_json::Value =
            serde_json::from_str(trimmed).map_err(|e| ImportError::Json(e.to_string()))?;
        if let Some(map) = value.as_object_mut() {
            map.entry("version").or_insert(version.into());
        }
        return serde_json::from_value(value).map_err(|e| ImportError::Json(e.to_string()));
    }
    parse_csv(trimmed, version)
}

fn parse_csv(text: &str, version: u64) -> Result<Sync, ImportError> {
    let first = text.lines().next().unwrap_or("");
    let delimiter = if first.contains(';') { b';' } else { b',' };
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .trim(csv::Trim::All)
        .flexible(true)
        .from_reader(text.as_bytes());
    let headers = reader
        .headers()
        .map_err(|e| ImportError::Csv(e.to_string()))?
        .clone();
    let column = |names: &[&str]| {
        headers.iter().position(|h| {
            let h = h.to_lowercase();
            names.iter().any(|n| h == *n)
        })
    };
    let id = column(&["id", "identifiant"]).ok_or(ImportError::Column("id"))?;
    let role = column(&["role", "rôle"]).ok_or(ImportError::Column("role"))?;
    let name = column(&["name", "nom"]).ok_or(ImportError::Column("name"))?;
    let classes = column(&["classes", "classe"]);
    let teaches = column(&["teaches", "enseigne"]);
    let children = column(&["children", "enfants"]);
    let level = column(&["level", "niveau"]);

    let mut people = Vec::new();
    let mut class_order: Vec<String> = Vec::new();
    let mut first_of_pupil: BTreeMap<String, Option<String>> = BTreeMap::new();
    for record in reader.records() {
        let record = record.map_err(|e| ImportError::Csv(e.to_string()))?;
        let line = record.position().map_or(0, |p| p.line());
        let cell = |i: Option<usize>| i.and_then(|i| record.get(i)).unwrap_or("");
        if record.iter().all(str::is_empty) {
            continue;
        }
        let role = parse_role(cell(Some(role))).ok_or_else(|| ImportError::Row {
            line,
            message: format!("unknown role {:?}", cell(Some(role))),
        })?;
        let list = |s: &str| -> Vec<String> {
            s.split('|')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        };
        let person_classes = list(cell(classes));
        let mut person_teaches = Vec::new();
        for item in list(cell(teaches)) {
            let (class, subject) = item.split_once(':').ok_or_else(|| ImportError::Row {
                line,
                message: format!("teaches: {item:?} is not CLASS:Subject"),
            })?;
            person_teaches.push(Teaching {
                class: class.trim().to_owned(),
                subject: subject.trim().to_owned(),
            });
        }
        for (i, class) in person_classes.iter().enumerate() {
            if !class_order.contains(class) {
                class_order.push(class.clone());
            }
            if i == 0 && role == crate::protocol::Role::Student {
                let level = Some(cell(level).to_owned()).filter(|l| !l.is_empty());
                let entry = first_of_pupil.entry(class.clone()).or_insert(None);
                if entry.is_none() {
                    *entry = level;
                }
            }
        }
        for t in &person_teaches {
            if !class_order.contains(&t.class) {
                class_order.push(t.class.clone());
            }
        }
        people.push(Person {
            id: cell(Some(id)).to_owned(),
            name: cell(Some(name)).to_owned(),
            role,
            classes: person_classes,
            teaches: person_teaches,
            children: list(cell(children)),
        });
    }
    let classes = class_order
        .into_iter()
        .map(|id| {
            let first = first_of_pupil.get(&id);
            Class {
                level: first.cloned().flatten(),
                group: first.is_none(),
                name: None,
                id,
            }
        })
        .collect();
    Ok(Sync {
        version,
        mode: Mode::Full,
        base: None,
        people,
        classes,
        remove: Removals::default(),
    })
}

fn parse_role(s: &str) -> Option<crate::protocol::Role> {
    use crate::protocol::Role;
    match s.trim().to_lowercase().as_str() {
        "student" | "élève" | "eleve" | "pupil" => Some(Role::Student),
        "teacher" | "enseignant" | "enseignante" | "professeur" => Some(Role::Teacher),
        "parent" | "responsable" => Some(Role::Parent),
        "staff" | "personnel" => Some(Role::Staff),
        _ => None,
    }
}
