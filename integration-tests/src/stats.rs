//! Summaries of repeated measurements: the machine is noisy, so figures are medians with their
//! range, and comparisons are ratios to a baseline measured in the same run.

/// Median, minimum and maximum of a series of samples.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    /// Median.
    pub median: f64,
    /// Smallest sample.
    pub min: f64,
    /// Largest sample.
    pub max: f64,
    /// Number of samples.
    pub n: usize,
}

impl Summary {
    /// Summarises `samples` (which must not be empty).
    pub fn of(samples: &[f64]) -> Summary {
        assert!(!samples.is_empty(), "no samples");
        let mut v = samples.to_vec();
        v.sort_by(|a, b| a.total_cmp(b));
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Summary {
            median,
            min: v[0],
            max: v[n - 1],
            n,
        }
    }
}

/// One line of a benchmark report: a figure for nabla next to its baseline.
#[derive(Debug, Clone)]
pub struct Row {
    /// What was measured, with its unit.
    pub figure: String,
    /// nabla's result.
    pub nabla: Summary,
    /// What the baseline is.
    pub baseline_name: String,
    /// The baseline's result.
    pub baseline: Summary,
    /// The target, in words (e.g. "≤ 1.3×").
    pub target: String,
    /// Whether the target was met.
    pub met: Option<bool>,
}

impl Row {
    /// nabla's median divided by the baseline's.
    pub fn ratio(&self) -> f64 {
        self.nabla.median / self.baseline.median
    }
}

/// Formats a value with a sensible number of digits.
pub fn fmt_value(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

/// Formats a summary as `median (min–max)`.
pub fn fmt_summary(s: &Summary) -> String {
    format!(
        "{} ({}–{})",
        fmt_value(s.median),
        fmt_value(s.min),
        fmt_value(s.max)
    )
}

/// Renders rows as a markdown table.
pub fn markdown_table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| figure | nabla median (min–max) | baseline | baseline median (min–max) | ratio | target |\n\
         |---|---|---|---|---|---|\n",
    );
    for r in rows {
        let verdict = match r.met {
            Some(true) => " ✓",
            Some(false) => " ✗",
            None => "",
        };
        out += &format!(
            "| {} | {} | {} | {} | {:.2}× | {}{} |\n",
            r.figure,
            fmt_summary(&r.nabla),
            r.baseline_name,
            fmt_summary(&r.baseline),
            r.ratio(),
            r.target,
            verdict
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even() {
        assert_eq!(Summary::of(&[3.0, 1.0, 2.0]).median, 2.0);
        let s = Summary::of(&[4.0, 1.0, 2.0, 3.0]);
        assert_eq!((s.median, s.min, s.max, s.n), (2.5, 1.0, 4.0, 4));
    }
}
