//! The verdict of `run.sh compare` (issue 19): which préau/peer ratios must
//! hold across runs, and the goals for them.
//!
//! - **Gated**: server CPU per delivery and memory (RSS per idle
//!   connection, RSS under load; cluster CPU and RSS included). The
//!   verdict passes when each of them, the median over a run's rounds of
//!   the same-round ratio, stays within ±[`DRIFT_LIMIT`] of run 1's in
//!   every later run.
//! - **Latency**: reported with their spread over rounds (median and
//!   interquartile range of the per-round ratio) and their drift, never
//!   gated: on this shared machine tail latency against Node servers moved
//!   by more than 15% between reruns whatever the rounds.
//! - **Information**: everything else shown (préau on tmpfs vs on disk).
//!
//! Goals are for information too: "Goals: K of N met" is printed after the
//! verdict and is not part of pass/fail.

/// How a compared figure enters the verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gate {
    /// CPU per delivery and memory: must hold within ±[`DRIFT_LIMIT`].
    Gated,
    /// Latency: median and IQR over rounds, drift shown, not gated.
    Latency,
    /// Shown for information (not a préau/peer cost ratio of the verdict).
    Information,
}

/// A gated ratio that moved more than this between runs fails the verdict.
pub const DRIFT_LIMIT: f64 = 0.15;

/// The median (the mean of the middle two for an even count).
pub fn median(values: Vec<f64>) -> Option<f64> {
    quantile(values, 0.5)
}

/// The `q` quantile, linear between the closest ranks (`q` = 0.25 and 0.75
/// give the quartiles; 0.5 the median).
pub fn quantile(mut values: Vec<f64>, q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let pos = q.clamp(0.0, 1.0) * (values.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    Some(values[lo] + (values[hi] - values[lo]) * (pos - lo as f64))
}

/// The interquartile range of `values`: (first quartile, third quartile).
pub fn iqr(values: &[f64]) -> Option<(f64, f64)> {
    Some((
        quantile(values.to_vec(), 0.25)?,
        quantile(values.to_vec(), 0.75)?,
    ))
}

/// The largest |ratio in run k ÷ ratio in run 1 − 1|; None when a run has
/// no ratio or there is only one run.
pub fn drift(ratios: &[Option<f64>]) -> Option<f64> {
    if ratios.len() < 2 {
        return None;
    }
    let first = ratios[0]?;
    let mut largest: f64 = 0.0;
    for r in ratios {
        largest = largest.max((r.as_ref()? / first - 1.0).abs());
    }
    Some(largest)
}

/// One row of the comparison: a figure against one peer.
#[derive(Clone, Debug)]
pub struct Row {
    /// For the verdict line: scenario, figure and peer.
    pub name: String,
    pub gate: Gate,
    /// Per run, the median over its rounds of the same-round ratio.
    pub ratios: Vec<Option<f64>>,
    /// The goal: the ratio must be at most this.
    pub goal: Option<f64>,
}

impl Row {
    /// Whether every run's ratio meets the goal (None without a goal or
    /// without any ratio).
    pub fn goal_met(&self) -> Option<bool> {
        let goal = self.goal?;
        let ratios: Vec<f64> = self.ratios.iter().flatten().copied().collect();
        if ratios.is_empty() {
            return None;
        }
        Some(ratios.iter().all(|r| *r <= goal))
    }
}

/// What the rows add up to.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    pub runs: usize,
    /// Gated rows with a ratio in every run.
    pub gated: usize,
    /// Gated rows that moved more than [`DRIFT_LIMIT`].
    pub drifted: Vec<String>,
    /// Gated rows measured in some runs but not all.
    pub missing: Vec<String>,
    /// Rows with a goal and a ratio: (met in every run, all).
    pub goals_met: usize,
    pub goals: usize,
}

/// The verdict over `rows` from `runs` runs: only [`Gate::Gated`] rows
/// count. A row with no ratio in any run (its scenario was not run) is
/// left out.
pub fn judge(rows: &[Row], runs: usize) -> Verdict {
    let mut verdict = Verdict {
        runs,
        gated: 0,
        drifted: Vec::new(),
        missing: Vec::new(),
        goals_met: 0,
        goals: 0,
    };
    for row in rows {
        if let Some(met) = row.goal_met() {
            verdict.goals += 1;
            verdict.goals_met += usize::from(met);
        }
        if row.gate != Gate::Gated || row.ratios.iter().all(Option::is_none) {
            continue;
        }
        if row.ratios.iter().any(Option::is_none) {
            verdict.missing.push(row.name.clone());
            continue;
        }
        verdict.gated += 1;
        if drift(&row.ratios).is_some_and(|d| d > DRIFT_LIMIT) {
            verdict.drifted.push(row.name.clone());
        }
    }
    verdict
}

impl Verdict {
    pub fn passed(&self) -> bool {
        self.runs >= 2 && self.drifted.is_empty() && self.missing.is_empty()
    }

    /// The verdict line (without the closing period).
    pub fn line(&self) -> String {
        let limit = DRIFT_LIMIT * 100.0;
        if self.runs < 2 {
            return "one run only: no drift measured (use --repeat 2)".to_owned();
        }
        if self.passed() {
            return format!(
                "PASS: all {} CPU and memory ratios within ±{limit:.0}% across {} runs \
                 (latency not gated)",
                self.gated, self.runs
            );
        }
        let mut line = format!(
            "FAIL: {} of {} CPU and memory ratios moved more than {limit:.0}% across {} runs",
            self.drifted.len(),
            self.gated + self.missing.len(),
            self.runs
        );
        if !self.drifted.is_empty() {
            line.push_str(&format!(" ({})", self.drifted.join("; ")));
        }
        if !self.missing.is_empty() {
            line.push_str(&format!(
                ", {} missing in a run ({})",
                self.missing.len(),
                self.missing.join("; ")
            ));
        }
        line
    }

    /// The goals line, printed after the verdict (not part of pass/fail).
    pub fn goals_line(&self) -> String {
        format!(
            "Goals: {} of {} met (issue 19; every run's median at or under the goal; not part \
             of the verdict)",
            self.goals_met, self.goals
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, gate: Gate, ratios: &[f64], goal: Option<f64>) -> Row {
        Row {
            name: name.to_owned(),
            gate,
            ratios: ratios.iter().map(|r| Some(*r)).collect(),
            goal,
        }
    }

    #[test]
    fn a_latency_ratio_that_drifted_does_not_fail_the_verdict() {
        let rows = [
            row(
                "revision CPU vs bare",
                Gate::Gated,
                &[1.80, 1.90],
                Some(0.8),
            ),
            row(
                "revision RSS vs bare",
                Gate::Gated,
                &[2.00, 2.02],
                Some(1.2),
            ),
            row(
                "revision steady p99 vs bare",
                Gate::Latency,
                &[1.0, 1.2],
                None,
            ),
            row("durability CPU", Gate::Information, &[1.0, 1.5], None),
        ];
        let verdict = judge(&rows, 2);
        assert!(verdict.passed(), "{}", verdict.line());
        assert_eq!(verdict.gated, 2);
        assert!(verdict
            .line()
            .starts_with("PASS: all 2 CPU and memory ratios"));
    }

    #[test]
    fn a_cpu_ratio_that_drifted_fails_the_verdict() {
        let rows = [
            row("revision CPU vs bare", Gate::Gated, &[1.0, 1.2], None),
            row(
                "revision steady p99 vs bare",
                Gate::Latency,
                &[1.0, 1.01],
                None,
            ),
        ];
        let verdict = judge(&rows, 2);
        assert!(!verdict.passed());
        assert_eq!(verdict.drifted, vec!["revision CPU vs bare".to_owned()]);
        assert!(verdict
            .line()
            .starts_with("FAIL: 1 of 1 CPU and memory ratios"));
        // Downwards counts as much as upwards: 0.8 ÷ 1.0 is a 20% move.
        let verdict = judge(&[row("x", Gate::Gated, &[1.0, 0.8], None)], 2);
        assert!(!verdict.passed());
    }

    #[test]
    fn a_scenario_not_run_is_left_out_and_one_missing_in_a_run_fails() {
        let not_run = Row {
            name: "notes CPU".to_owned(),
            gate: Gate::Gated,
            ratios: vec![None, None],
            goal: Some(0.3),
        };
        let verdict = judge(&[row("cpu", Gate::Gated, &[1.0, 1.1], None), not_run], 2);
        assert!(verdict.passed(), "{}", verdict.line());
        assert_eq!((verdict.gated, verdict.goals), (1, 0));
        let half = Row {
            name: "cluster RSS".to_owned(),
            gate: Gate::Gated,
            ratios: vec![Some(1.0), None],
            goal: None,
        };
        let verdict = judge(&[half], 2);
        assert!(!verdict.passed());
        assert_eq!(verdict.missing, vec!["cluster RSS".to_owned()]);
        assert!(!judge(&[row("cpu", Gate::Gated, &[1.0], None)], 1).passed());
    }

    #[test]
    fn goals_count_rows_met_in_every_run() {
        let rows = [
            row("cpu vs bare", Gate::Gated, &[0.7, 0.79], Some(0.8)),
            row("cpu vs socketio", Gate::Gated, &[0.45, 0.55], Some(0.5)),
            row("p99 vs bare", Gate::Latency, &[0.9, 0.95], Some(1.0)),
            row("cluster cpu", Gate::Gated, &[2.0, 2.1], None),
        ];
        let verdict = judge(&rows, 2);
        assert_eq!((verdict.goals_met, verdict.goals), (2, 3));
        assert_eq!(rows[1].goal_met(), Some(false));
        assert!(verdict.goals_line().starts_with("Goals: 2 of 3 met"));
    }

    #[test]
    fn quartiles_and_median() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(Vec::new()), None);
        assert_eq!(iqr(&[1.0, 2.0, 3.0, 4.0, 5.0]), Some((2.0, 4.0)));
        assert_eq!(iqr(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]), Some((2.25, 4.75)));
        assert_eq!(iqr(&[7.0]), Some((7.0, 7.0)));
    }

    #[test]
    fn drift_is_the_largest_move_from_run_one() {
        assert_eq!(drift(&[Some(1.0)]), None);
        assert_eq!(drift(&[Some(2.0), None]), None);
        let d = drift(&[Some(2.0), Some(2.2), Some(1.9)]).unwrap_or(0.0);
        assert!((d - 0.1).abs() < 1e-9, "{d}");
    }
}
