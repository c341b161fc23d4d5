//! Deterministic per-step views of a run's state (DESIGN §4 "State").
//!
//! Step `i` sees the initial variables plus the outputs of its transitive dependencies merged in
//! declaration order, whatever order they finished in; the final context merges every completed step
//! in declaration order. Values are generic (`crate::py` uses Python objects) and maps are persistent
//! (`imbl`), so handing a view to a step is a clone of two pointers.
//!
//! # Cost
//!
//! Rebuilding every view from its ancestors would be O(n²) on a chain. Instead the view *after* a
//! step (its view plus its own output) is memoized, and a step whose only dependency `d` is declared
//! after all of `d`'s ancestors simply gets `after(d)`: on a chain each view costs O(its delta).
//! Other steps fold their ancestors' outputs, starting from a dependency's memo when that memo
//! already covers a prefix (in declaration order) of the ancestors, as on a diamond or a fan-in.
//! Memos are dropped once every dependent has had its view, so a long chain keeps O(1) of them.
//!
//! # Contract
//!
//! Memos assume what the scheduler guarantees: a step is recorded only after every ancestor that
//! will ever be recorded has been (completion order is always such an order). Under it, a view is
//! exactly the fold over the ancestors recorded when it is asked for.

use std::sync::Arc;

use super::graph::Graph;

/// A persistent map (a hash trie) from names (variable names or step ids) to values; cloning is
/// O(1) and an insert copies only the short path to its entry. Unordered: the binding sorts keys
/// where Python iterates.
/// NOTE: hashed with foldhash (randomly seeded per process), not std's SipHash: on W1 (1,000
/// chained steps, two inserts each) SipHash was ~540 of ~18,000 instructions a step. The keys
/// are the workflow's own step ids and variable names, not input from a network peer.
pub type Map<V> = imbl::GenericHashMap<
    Arc<str>,
    V,
    foldhash::fast::RandomState,
    imbl::shared_ptr::DefaultSharedPtr,
>;

/// A dict output's `(key, value)` items, in dict order; one item is kept inline (`smallvec`), so
/// the usual one-key output of a chain's step allocates no list.
pub type Delta<V> = smallvec::SmallVec<[(Arc<str>, V); 1]>;

/// What one step sees: the merged variables and its ancestors' outputs by step id.
#[derive(Debug, Clone, PartialEq)]
pub struct View<V: Clone> {
    /// The initial variables with the dict outputs of the ancestors merged in declaration order.
    pub vars: Map<V>,
    /// Each recorded ancestor's output under its step id.
    pub results: Map<V>,
}

/// A completed step's contribution to its descendants' views.
#[derive(Debug)]
struct Recorded<V> {
    id: Arc<str>,
    vars: Delta<V>,
    result: V,
}

/// `after(step)`: the fold over the step's ancestors and itself, as recorded so far.
#[derive(Debug)]
struct Memo<V: Clone> {
    view: View<V>,
    /// How many ancestors the step has, to tell whether this memo covers a prefix of a
    /// descendant's ancestors.
    ancestors: usize,
    /// Whether the step's own output is in `view` (it was recorded); kept equal to
    /// `recorded[step].is_some()`.
    has_own: bool,
}

/// The state of one run: initial variables, each completed step's output, and memoized views.
#[derive(Debug)]
pub struct StateViews<V: Clone> {
    initial: Map<V>,
    initial_results: Map<V>,
    recorded: Vec<Option<Recorded<V>>>,
    memo: Vec<Option<Memo<V>>>,
    /// Per step, how many dependents have not had their view computed: the memo is dropped at 0.
    /// Empty until the first `view_for` brings the graph.
    waiting: Vec<u32>,
    view_done: Vec<bool>,
}

impl<V: Clone> StateViews<V> {
    /// State for a run of a graph with `n_steps` steps, starting from `initial_vars`.
    pub fn new(n_steps: usize, initial_vars: Map<V>) -> Self {
        Self::with_results(n_steps, initial_vars, Map::new())
    }

    /// As `new`, with results already known before the run (a nested run started inside a
    /// composite step sees the results of that step's ancestors). Every view holds them.
    pub fn with_results(n_steps: usize, initial_vars: Map<V>, initial_results: Map<V>) -> Self {
        StateViews {
            initial: initial_vars,
            initial_results,
            recorded: (0..n_steps).map(|_| None).collect(),
            memo: (0..n_steps).map(|_| None).collect(),
            waiting: Vec::new(),
            view_done: vec![false; n_steps],
        }
    }

    /// Records a completed step's output: `vars_delta` holds the (key, value) items of a dict output
    /// in dict order (empty for any other output), and `result` is the output itself, stored under
    /// `step_id`. Recording a step again replaces its output.
    pub fn record(
        &mut self,
        step: usize,
        step_id: Arc<str>,
        vars_delta: impl Into<Delta<V>>,
        result: V,
    ) {
        let recorded = Recorded {
            id: step_id,
            vars: vars_delta.into(),
            result,
        };
        if let Some(memo) = self.memo[step].take() {
            // A memo that already held an earlier output is stale; one that held just the step's
            // view becomes its `after` in O(delta), if a dependent still needs it.
            if !memo.has_own && (self.still_needed(step) || self.covers_all(step, memo.ancestors)) {
                let mut view = memo.view;
                apply(&mut view, &recorded);
                self.memo[step] = Some(Memo {
                    view,
                    ancestors: memo.ancestors,
                    has_own: true,
                });
            }
        }
        // after(last) stands for the final view only while no other step is recorded after it.
        let last = self.recorded.len().saturating_sub(1);
        if step != last && self.memo[last].as_ref().is_some_and(|m| m.has_own) {
            self.memo[last] = None;
        }
        self.recorded[step] = Some(recorded);
    }

    /// The view step `i` sees: the initial variables plus the recorded outputs of its ancestors
    /// applied in ascending declaration index (skipped or failed ancestors have no output); `results`
    /// likewise holds those ancestors' outputs. Ancestors not recorded yet are simply absent.
    ///
    /// `graph` must be the graph of the run, the same on every call. Iterative, so any depth is fine.
    pub fn view_for(&mut self, graph: &Graph, i: usize) -> View<V> {
        debug_assert_eq!(
            graph.len(),
            self.recorded.len(),
            "graph of another workflow"
        );
        if self.waiting.len() != graph.len() {
            self.waiting = (0..graph.len())
                .map(|s| u32::try_from(graph.dependents(s).len()).unwrap_or(u32::MAX))
                .collect();
        }
        if self.recorded[i].is_none() {
            // Asked again (a condition, then the step itself): the memo is this very view.
            if let Some(memo) = &self.memo[i] {
                return memo.view.clone();
            }
        }

        // Climb single-dependency links until a view is at hand: a memo, a root, or a step that
        // must fold its ancestors. `below` holds the steps to come back down through.
        let mut below = Vec::new();
        let mut cur = i;
        let (mut view, mut ancestors) = loop {
            match *graph.deps(cur) {
                [] => break (self.initial_view(), 0),
                [d] if graph.declared_after_ancestors(d) => {
                    if let Some(memo) = &self.memo[d] {
                        break (memo.view.clone(), memo.ancestors + 1);
                    }
                    below.push(cur);
                    cur = d;
                }
                _ => break self.fold(graph, cur),
            }
        };

        // `view` is view(cur) here; each step down turns it into after(cur) = view(next).
        loop {
            self.mark_view_done(graph, cur);
            let has_own = self.recorded[cur].is_some();
            let Some(next) = below.pop() else {
                // Kept for a repeated ask and to become after(i) when i is recorded, but only when
                // every dependency is recorded: then no ancestor can change it any more.
                if !has_own && self.deps_recorded(graph, cur) {
                    self.memo[cur] = Some(Memo {
                        view: view.clone(),
                        ancestors,
                        has_own,
                    });
                }
                return view;
            };
            if let Some(recorded) = &self.recorded[cur] {
                apply(&mut view, recorded);
            }
            if self.still_needed(cur) && (has_own || self.deps_recorded(graph, cur)) {
                self.memo[cur] = Some(Memo {
                    view: view.clone(),
                    ancestors,
                    has_own,
                });
            }
            ancestors += 1;
            cur = next;
        }
    }

    /// The final view: the initial variables plus every recorded step, in declaration order.
    ///
    /// When the last-declared step has every other step as an ancestor (a chain) and was recorded
    /// last, its `after` memo is this view: a clone, not a fold over every step.
    pub fn final_view(&self) -> View<V> {
        if let Some(Some(memo)) = self.memo.last() {
            if memo.has_own && memo.ancestors + 1 == self.memo.len() {
                return memo.view.clone();
            }
        }
        let mut view = self.initial_view();
        for recorded in self.recorded.iter().flatten() {
            apply(&mut view, recorded);
        }
        view
    }

    fn initial_view(&self) -> View<V> {
        View {
            vars: self.initial.clone(),
            results: self.initial_results.clone(),
        }
    }

    /// view(i) by folding i's ancestors, starting from the memo of a dependency `d` when `d` and its
    /// ancestors are exactly the earliest-declared of i's ancestors (then that memo is the fold of
    /// that prefix). Returns the view and i's ancestor count.
    fn fold(&self, graph: &Graph, i: usize) -> (View<V>, usize) {
        let ancestors = graph.ancestors(i);
        let mut best: Option<(usize, &Memo<V>)> = None;
        for &d in graph.deps(i) {
            let Some(memo) = &self.memo[d] else { continue };
            if !graph.declared_after_ancestors(d) {
                continue;
            }
            // d and its ancestors all sit at or before d's position; it is a prefix exactly when
            // nothing else does.
            let Ok(pos) = ancestors.binary_search(&d) else {
                continue;
            };
            if pos == memo.ancestors && best.is_none_or(|(p, _)| pos > p) {
                best = Some((pos, memo));
            }
        }
        let (mut view, from) = match best {
            Some((pos, memo)) => (memo.view.clone(), pos + 1),
            None => (self.initial_view(), 0),
        };
        for &a in &ancestors[from..] {
            if let Some(recorded) = &self.recorded[a] {
                apply(&mut view, recorded);
            }
        }
        (view, ancestors.len())
    }

    /// Counts step `i`'s view as taken by its dependencies' memos, dropping the ones no other
    /// dependent needs (a memo is only a cache: a dropped one is rebuilt if asked for again).
    fn mark_view_done(&mut self, graph: &Graph, i: usize) {
        if std::mem::replace(&mut self.view_done[i], true) {
            return;
        }
        for &d in graph.deps(i) {
            self.waiting[d] = self.waiting[d].saturating_sub(1);
            if self.waiting[d] == 0 {
                self.memo[d] = None;
            }
        }
    }

    /// Whether `after(step)` is the final view: `step` is the last declared and every other step
    /// is one of its `ancestors` (then `final_view` keeps its memo instead of folding them all).
    fn covers_all(&self, step: usize, ancestors: usize) -> bool {
        step + 1 == self.recorded.len() && ancestors == step
    }

    fn still_needed(&self, step: usize) -> bool {
        self.waiting.get(step).is_some_and(|&w| w > 0)
    }

    fn deps_recorded(&self, graph: &Graph, i: usize) -> bool {
        graph.deps(i).iter().all(|&d| self.recorded[d].is_some())
    }
}

/// Merges one step's output into a view: its dict items over the variables, itself under its id.
fn apply<V: Clone>(view: &mut View<V>, recorded: &Recorded<V>) {
    for (key, value) in &recorded.vars {
        view.vars.insert(Arc::clone(key), value.clone());
    }
    view.results
        .insert(Arc::clone(&recorded.id), recorded.result.clone());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::graph::StepDecl;

    fn graph(edges: &[(&str, &[&str])]) -> Graph {
        Graph::build(
            edges
                .iter()
                .map(|(id, deps)| StepDecl {
                    id: id.to_string(),
                    deps: deps.iter().map(|d| d.to_string()).collect(),
                    refs: vec![],
                })
                .collect(),
        )
        .unwrap()
    }

    fn chain_graph(n: usize) -> Graph {
        Graph::build(
            (0..n)
                .map(|i| StepDecl {
                    id: format!("s{i}"),
                    deps: if i == 0 {
                        vec![]
                    } else {
                        vec![format!("s{}", i - 1)]
                    },
                    refs: vec![],
                })
                .collect(),
        )
        .unwrap()
    }

    fn key(s: &str) -> Arc<str> {
        Arc::from(s)
    }

    fn vars(items: &[(&str, i64)]) -> Map<i64> {
        items.iter().map(|&(k, v)| (key(k), v)).collect()
    }

    /// Records step `i` of `g` with a dict output `{k: v, ...}` and result `result`.
    fn record(s: &mut StateViews<i64>, g: &Graph, i: usize, delta: &[(&str, i64)], result: i64) {
        let delta: Delta<i64> = delta.iter().map(|&(k, v)| (key(k), v)).collect();
        s.record(i, key(g.id(i)), delta, result);
    }

    fn result_ids(view: &View<i64>) -> Vec<String> {
        let mut ids: Vec<String> = view.results.keys().map(|k| k.to_string()).collect();
        ids.sort();
        ids
    }

    /// The definition, folded from scratch.
    fn naive_view(s: &StateViews<i64>, g: &Graph, i: usize) -> View<i64> {
        let mut view = s.initial_view();
        for a in g.ancestors(i) {
            if let Some(recorded) = &s.recorded[a] {
                apply(&mut view, recorded);
            }
        }
        view
    }

    #[test]
    fn root_sees_the_initial_variables_and_no_results() {
        let g = graph(&[("a", &[])]);
        let mut s = StateViews::new(1, vars(&[("x", 1)]));
        let view = s.view_for(&g, 0);
        assert_eq!(view.vars, vars(&[("x", 1)]));
        assert!(view.results.is_empty());
    }

    #[test]
    fn chain_step_sees_every_upstream_output() {
        let g = chain_graph(3);
        let mut s = StateViews::new(3, vars(&[("n", 0)]));
        record(&mut s, &g, 0, &[("n", 1), ("a", 10)], 100);
        record(&mut s, &g, 1, &[("n", 2)], 200);
        let view = s.view_for(&g, 2);
        assert_eq!(view.vars, vars(&[("n", 2), ("a", 10)]));
        assert_eq!(view.results, vars(&[("s0", 100), ("s1", 200)]));
    }

    #[test]
    fn chain_where_every_step_asks_counts_up() {
        let g = chain_graph(1_000);
        let mut s = StateViews::new(1_000, vars(&[("counter", 0)]));
        for i in 0..1_000 {
            let view = s.view_for(&g, i);
            let counter = view.vars[&key("counter")];
            assert_eq!(counter, i as i64);
            assert_eq!(view.results.len(), i);
            record(&mut s, &g, i, &[("counter", counter + 1)], counter);
        }
        assert_eq!(s.final_view().vars[&key("counter")], 1_000);
    }

    /// The fold `final_view` makes when no memo stands for it.
    fn folded(s: &StateViews<i64>) -> View<i64> {
        let mut view = s.initial_view();
        for recorded in s.recorded.iter().flatten() {
            apply(&mut view, recorded);
        }
        view
    }

    #[test]
    fn chain_final_view_is_the_last_steps_after_memo() {
        let g = chain_graph(50);
        let mut s = StateViews::new(50, vars(&[("counter", 0)]));
        for i in 0..50 {
            let counter = s.view_for(&g, i).vars[&key("counter")];
            record(
                &mut s,
                &g,
                i,
                &[("counter", counter + 1), ("last", i as i64)],
                counter,
            );
        }
        assert!(s.memo[49].as_ref().is_some_and(|m| m.has_own));
        assert_eq!(s.final_view(), folded(&s));
        assert_eq!(s.final_view().vars[&key("counter")], 50);
        // An earlier step recorded again after the last one: the memo no longer stands for it.
        record(&mut s, &g, 3, &[("counter", -1), ("extra", 1)], 7);
        assert!(s.memo[49].is_none());
        assert_eq!(s.final_view(), folded(&s));
        assert_eq!(s.final_view().vars[&key("extra")], 1);
        // The last step recorded again: its stale memo is dropped, the fold answers.
        record(&mut s, &g, 49, &[("counter", 99)], 0);
        assert_eq!(s.final_view(), folded(&s));
        assert_eq!(s.final_view().vars[&key("counter")], 99);
    }

    #[test]
    fn diamond_final_view_folds_every_step() {
        // s0 -> s1, s0 -> s2: the last step does not have every other one as an ancestor.
        let g = graph(&[("s0", &[]), ("s1", &["s0"]), ("s2", &["s0"])]);
        let mut s = StateViews::new(3, Map::new());
        for i in 0..3 {
            s.view_for(&g, i);
            record(
                &mut s,
                &g,
                i,
                &[("k", i as i64), (["a", "b", "c"][i], 1)],
                0,
            );
        }
        let fin = s.final_view();
        assert_eq!(fin, folded(&s));
        assert_eq!(fin.vars, vars(&[("k", 2), ("a", 1), ("b", 1), ("c", 1)]));
    }

    #[test]
    fn chain_keeps_a_constant_number_of_memos() {
        let g = chain_graph(1_000);
        let mut s = StateViews::new(1_000, Map::new());
        for i in 0..1_000 {
            s.view_for(&g, i);
            record(&mut s, &g, i, &[("k", i as i64)], 0);
            assert!(s.memo.iter().flatten().count() <= 2, "step {i}");
        }
    }

    #[test]
    fn chain_of_100000_asked_only_at_the_end_does_not_overflow_the_stack() {
        let n = 100_000;
        let g = chain_graph(n);
        let mut s = StateViews::new(n, Map::new());
        for i in 0..n - 1 {
            record(&mut s, &g, i, &[("last", i as i64)], i as i64);
        }
        let view = s.view_for(&g, n - 1);
        assert_eq!(view.vars[&key("last")], (n - 2) as i64);
        assert_eq!(view.results.len(), n - 1);
    }

    #[test]
    fn diamond_conflicting_keys_take_the_later_declared_value() {
        // d depends on c before b, and c finishes first: b (declared later) still wins.
        let g = graph(&[("a", &[]), ("c", &["a"]), ("b", &["a"]), ("d", &["b", "c"])]);
        let mut s = StateViews::new(4, Map::new());
        record(&mut s, &g, 0, &[("k", 0), ("from_a", 1)], 0);
        record(&mut s, &g, 2, &[("k", 2)], 2);
        record(&mut s, &g, 1, &[("k", 1)], 1);
        let view = s.view_for(&g, 3);
        assert_eq!(view.vars, vars(&[("k", 2), ("from_a", 1)]));
        assert_eq!(result_ids(&view), ["a", "b", "c"]);
    }

    #[test]
    fn diamond_join_reusing_a_branch_memo_matches_the_full_fold() {
        let g = graph(&[("a", &[]), ("b", &["a"]), ("c", &["a"]), ("d", &["b", "c"])]);
        let mut s = StateViews::new(4, vars(&[("k", -1)]));
        for i in 0..3 {
            s.view_for(&g, i);
            record(&mut s, &g, i, &[("k", i as i64)], i as i64);
        }
        assert!(
            s.memo[1].is_some(),
            "b's memo should be there to start from"
        );
        assert_eq!(s.view_for(&g, 3), naive_view(&s, &g, 3));
        assert_eq!(s.view_for(&g, 3).vars, vars(&[("k", 2)]));
    }

    #[test]
    fn forward_declared_ancestor_is_merged_in_declaration_order() {
        // b depends on c, which is declared after it: c runs first but b's output comes first in
        // declaration order, so c's value wins for d.
        let g = graph(&[("a", &[]), ("b", &["c"]), ("c", &["a"]), ("d", &["b"])]);
        let mut s = StateViews::new(4, Map::new());
        record(&mut s, &g, 0, &[("k", 0)], 0);
        assert_eq!(s.view_for(&g, 2).vars, vars(&[("k", 0)]));
        record(&mut s, &g, 2, &[("k", 2)], 2);
        assert_eq!(s.view_for(&g, 1).vars, vars(&[("k", 2)]));
        record(&mut s, &g, 1, &[("k", 1)], 1);
        assert_eq!(s.view_for(&g, 3).vars, vars(&[("k", 2)]));
    }

    #[test]
    fn results_hold_only_ancestors() {
        let g = graph(&[("a", &[]), ("other", &[]), ("b", &["a"])]);
        let mut s = StateViews::new(3, Map::new());
        record(&mut s, &g, 0, &[], 10);
        record(&mut s, &g, 1, &[], 20);
        let view = s.view_for(&g, 2);
        assert_eq!(view.results, vars(&[("a", 10)]));
    }

    #[test]
    fn non_dict_output_changes_results_but_not_vars() {
        let g = chain_graph(2);
        let mut s = StateViews::new(2, vars(&[("x", 1)]));
        record(&mut s, &g, 0, &[], 42);
        let view = s.view_for(&g, 1);
        assert_eq!(view.vars, vars(&[("x", 1)]));
        assert_eq!(view.results, vars(&[("s0", 42)]));
    }

    #[test]
    fn skipped_ancestor_contributes_nothing_but_its_ancestors_still_count() {
        let g = chain_graph(3);
        let mut s = StateViews::new(3, Map::new());
        s.view_for(&g, 0);
        record(&mut s, &g, 0, &[("k", 0)], 0);
        s.view_for(&g, 1); // evaluated its condition, then was skipped: never recorded
        let view = s.view_for(&g, 2);
        assert_eq!(view.vars, vars(&[("k", 0)]));
        assert_eq!(result_ids(&view), ["s0"]);
    }

    #[test]
    fn unrecorded_ancestors_are_simply_absent() {
        let g = chain_graph(3);
        let mut s = StateViews::new(3, vars(&[("x", 1)]));
        let view = s.view_for(&g, 2);
        assert_eq!(view.vars, vars(&[("x", 1)]));
        assert!(view.results.is_empty());
    }

    #[test]
    fn asking_twice_gives_the_same_view() {
        let g = chain_graph(3);
        let mut s = StateViews::new(3, Map::new());
        record(&mut s, &g, 0, &[("k", 0)], 0);
        record(&mut s, &g, 1, &[("k", 1)], 1);
        let first = s.view_for(&g, 2);
        assert_eq!(s.view_for(&g, 2), first);
    }

    #[test]
    fn asking_after_recording_still_excludes_the_step_itself() {
        let g = chain_graph(2);
        let mut s = StateViews::new(2, Map::new());
        s.view_for(&g, 0);
        record(&mut s, &g, 0, &[("k", 0)], 0);
        assert!(s.view_for(&g, 0).results.is_empty());
        assert_eq!(s.view_for(&g, 1).vars, vars(&[("k", 0)]));
    }

    #[test]
    fn final_view_merges_every_recorded_step_in_declaration_order() {
        let g = graph(&[("a", &["b"]), ("b", &[]), ("c", &[])]);
        let mut s = StateViews::new(3, vars(&[("k", -1), ("init", 7)]));
        record(&mut s, &g, 1, &[("k", 1)], 1);
        record(&mut s, &g, 0, &[("k", 0)], 0);
        let view = s.final_view();
        assert_eq!(view.vars, vars(&[("k", 1), ("init", 7)]));
        assert_eq!(result_ids(&view), ["a", "b"]);
    }

    #[test]
    fn rerecording_a_step_replaces_its_output() {
        let g = chain_graph(3);
        let mut s = StateViews::new(3, Map::new());
        s.view_for(&g, 0);
        record(&mut s, &g, 0, &[("k", 0)], 0);
        record(&mut s, &g, 0, &[("k", 5)], 5);
        assert_eq!(s.view_for(&g, 1).vars, vars(&[("k", 5)]));
    }

    #[test]
    fn views_match_a_full_fold_on_random_dags_and_schedules() {
        let mut rng = fastrand::Rng::with_seed(2024);
        for round in 0..200 {
            let n = rng.usize(1..40);
            // Random DAG over a random permutation, so dependencies are often declared later.
            let mut order: Vec<usize> = (0..n).collect();
            rng.shuffle(&mut order);
            let decls = (0..n)
                .map(|i| {
                    let pos = order.iter().position(|&x| x == i).unwrap();
                    let deps = (0..rng.usize(0..=pos.min(3)))
                        .map(|_| format!("s{}", order[rng.usize(0..pos)]))
                        .collect();
                    StepDecl {
                        id: format!("s{i}"),
                        deps,
                        refs: vec![],
                    }
                })
                .collect();
            let g = Graph::build(decls).unwrap();
            let mut s = StateViews::new(n, vars(&[("k", -1)]));
            // A scheduler: run ready steps in random order; each asks for its view (sometimes
            // twice, sometimes not at all), then completes (recorded) or is skipped.
            let mut left: Vec<usize> = (0..n).map(|i| g.deps(i).len()).collect();
            let mut ready: Vec<usize> = g.roots().to_vec();
            while !ready.is_empty() {
                let i = ready.swap_remove(rng.usize(..ready.len()));
                for _ in 0..rng.usize(0..3) {
                    assert_eq!(
                        s.view_for(&g, i),
                        naive_view(&s, &g, i),
                        "round {round} step {i}"
                    );
                }
                if rng.u8(..10) > 0 {
                    let v = (round * 100 + i) as i64;
                    let delta: Vec<(&str, i64)> =
                        [("k", v), ("even", v)][..rng.usize(0..=2)].to_vec();
                    record(&mut s, &g, i, &delta, v);
                }
                for &c in g.dependents(i) {
                    left[c] -= 1;
                    if left[c] == 0 {
                        ready.push(c);
                    }
                }
            }
        }
    }
}
