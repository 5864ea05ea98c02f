//! Who may write to whom, from the school directory: the messaging rules
//! of `protocol/README.md` ("Direct messages"), one function per question.

use crate::auth::Claims;
use crate::config::Config;
use crate::directory::{Index, Person};
use crate::protocol::Role;

/// Why a message to someone is refused.
pub type Why = &'static str;

fn share_class(a: &[String], b: &[String]) -> bool {
    a.iter().any(|c| b.contains(c))
}

/// The classes a person reaches (a teacher's: those they teach).
fn classes(index: &Index, person: &Person) -> Vec<String> {
    index
        .access(&person.id)
        .map(|a| a.classes)
        .unwrap_or_default()
}

/// Whether `from` may start a conversation with `to`.
pub fn may_write(index: &Index, config: &Config, from: &Claims, to: &Person) -> Result<(), Why> {
    if from.sub == to.id {
        return Err("you cannot write to yourself");
    }
    let theirs = classes(index, to);
    let is_parent_of = |parent: &str, pupil: &str| index.parents_of(pupil).any(|p| p.id == parent);
    match (from.role, to.role) {
        (Role::Staff, _) | (_, Role::Staff) => Ok(()),
        (Role::Teacher, Role::Teacher) => Ok(()),
        (Role::Teacher, Role::Student) | (Role::Student, Role::Teacher) => {
            if share_class(&from.classes, &theirs) {
                Ok(())
            } else {
                Err("teachers and pupils write to each other within the teacher's classes")
            }
        }
        (Role::Teacher, Role::Parent) => {
            if to
                .children
                .iter()
                .filter_map(|c| index.person(c))
                .any(|child| share_class(&from.classes, &child.classes))
            {
                Ok(())
            } else {
                Err("a teacher writes to the parents of pupils they teach")
            }
        }
        (Role::Parent, Role::Teacher) => {
            if share_class(&from.classes, &theirs) {
                Ok(())
            } else {
                Err("parents write to their children's teachers")
            }
        }
        (Role::Student, Role::Student) => {
            if !config.dm_pupil_to_pupil {
                Err("messages between pupils are off in this school")
            } else if share_class(&from.classes, &theirs) {
                Ok(())
            } else {
                Err("pupils write to pupils of their classes")
            }
        }
        (Role::Student, Role::Parent) => {
            if is_parent_of(&to.id, &from.sub) {
                Ok(())
            } else {
                Err("a pupil writes to their own parents only")
            }
        }
        (Role::Parent, Role::Student) => {
            if from.has_child(&to.id) {
                Ok(())
            } else {
                Err("a parent writes to their own children only")
            }
        }
        (Role::Parent, Role::Parent) => {
            if from.children.iter().any(|c| is_parent_of(&to.id, &c.id)) {
                Ok(())
            } else {
                Err("parents write to their children's other parent only")
            }
        }
    }
}

/// Whether `by`, a member, may add `new` to a conversation: a pupil their
/// parents, a teacher a colleague, a parent their child's other parent,
/// staff anyone (and only people `by` may write to).
pub fn may_add(index: &Index, config: &Config, by: &Claims, new: &Person) -> Result<(), Why> {
    let allowed = match by.role {
        Role::Staff => true,
        Role::Student => new.role == Role::Parent,
        Role::Teacher => matches!(new.role, Role::Teacher | Role::Staff),
        Role::Parent => new.role == Role::Parent,
    };
    if !allowed {
        return Err(match by.role {
            Role::Student => "a pupil adds their parents",
            Role::Teacher => "a teacher adds a colleague",
            _ => "a parent adds their child's other parent",
        });
    }
    may_write(index, config, by, new)
}
