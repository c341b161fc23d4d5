//! The workflow's dependency graph: built and validated once, then shared read-only by every run.
//!
//! Steps are addressed by their *declaration index* (their position in the list given to
//! [`Graph::build`]); that order is also the order in which state is merged, so it is kept stable
//! everywhere (dependents, roots, sinks and ties in the topological order are all by that index).
//!
//! Adjacency is stored in compressed form (one flat array plus offsets per direction) so a
//! 10,000-step graph is a handful of allocations, and nothing quadratic is precomputed: ancestor
//! sets are walked on demand.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;

use super::error::{DefResult, DefinitionError};

/// One step as declared, before validation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StepDecl {
    /// The step's id, unique in the workflow.
    pub id: String,
    /// Ids of the steps this one waits for (duplicates are ignored).
    pub deps: Vec<String>,
    /// Ids named by `{x.result}` / `{x.result.key}` templates in this step's message or args; each
    /// must be a transitive dependency.
    pub refs: Vec<String>,
}

/// A validated DAG of steps. Immutable after [`Graph::build`], so it is `Send + Sync` and can be
/// shared by concurrent runs.
#[derive(Debug, Clone)]
pub struct Graph {
    /// Each id is one allocation, shared by `index` and by the compiled plan's per-step specs
    /// (`shared_id`): three copies per step cost a 10,000-step plan ~1 MB (benchmark M).
    ids: Vec<Arc<str>>,
    index: HashMap<Arc<str>, usize>,
    deps: Adjacency,
    dependents: Adjacency,
    roots: Vec<usize>,
    sinks: Vec<usize>,
    topo: Vec<usize>,
    /// Position of each step in `topo`: an ancestor always sits earlier, which prunes searches.
    topo_pos: Vec<usize>,
    declared_after_ancestors: Vec<bool>,
    chains: ChainForest,
}

/// The forest of single-dependency links (a step with exactly one dependency is that step's child),
/// with entry/exit times of a depth-first walk. Chains, fan-outs and trees are the common shapes of
/// workflows, and in them "is `a` an ancestor of `u`" becomes an O(1) interval test instead of a
/// walk up the chain, so checking every `{x.result}` of a long chain stays linear.
#[derive(Debug, Clone)]
struct ChainForest {
    /// The step where each step's single-dependency chain starts (itself when it has 0 or 2+ deps).
    top: Vec<usize>,
    enter: Vec<usize>,
    exit: Vec<usize>,
}

impl ChainForest {
    fn new(n: usize, deps: &Adjacency, dependents: &Adjacency) -> ChainForest {
        let is_link = |c: usize| deps.of(c).len() == 1;
        let mut forest = ChainForest {
            top: vec![0; n],
            enter: vec![0; n],
            exit: vec![0; n],
        };
        let mut clock = 0;
        // (step, next dependent to look at): an explicit stack, so a 100,000-step chain is fine.
        let mut stack: Vec<(usize, usize)> = Vec::new();
        for top in (0..n).filter(|&i| !is_link(i)) {
            forest.top[top] = top;
            forest.enter[top] = clock;
            clock += 1;
            stack.push((top, 0));
            while let Some((u, k)) = stack.last_mut() {
                let u = *u;
                let children = dependents.of(u);
                match children[*k..].iter().position(|&c| is_link(c)) {
                    Some(skip) => {
                        let c = children[*k + skip];
                        *k += skip + 1;
                        forest.top[c] = top;
                        forest.enter[c] = clock;
                        clock += 1;
                        stack.push((c, 0));
                    }
                    None => {
                        forest.exit[u] = clock;
                        stack.pop();
                    }
                }
            }
        }
        forest
    }

    /// True when `a` lies strictly above `u` on `u`'s single-dependency chain.
    fn above(&self, a: usize, u: usize) -> bool {
        self.top[a] == self.top[u] && self.enter[a] < self.enter[u] && self.exit[u] <= self.exit[a]
    }
}

/// Per-step neighbour lists in one flat array: `targets[offsets[i]..offsets[i + 1]]`.
#[derive(Debug, Clone)]
struct Adjacency {
    offsets: Vec<usize>,
    targets: Vec<usize>,
}

impl Adjacency {
    fn of(&self, i: usize) -> &[usize] {
        &self.targets[self.offsets[i]..self.offsets[i + 1]]
    }

    fn from_lists(lists: &[Vec<usize>]) -> Adjacency {
        let mut offsets = Vec::with_capacity(lists.len() + 1);
        let mut targets = Vec::with_capacity(lists.iter().map(Vec::len).sum());
        offsets.push(0);
        for list in lists {
            targets.extend_from_slice(list);
            offsets.push(targets.len());
        }
        Adjacency { offsets, targets }
    }
}

/// A fixed-size set of step indices; one bit per step keeps "visited" cheap even for large graphs.
struct BitSet(Vec<u64>);

impl BitSet {
    fn new(n: usize) -> BitSet {
        BitSet(vec![0; n.div_ceil(64)])
    }

    /// Adds `i`; true when it was not there yet.
    fn insert(&mut self, i: usize) -> bool {
        let (word, bit) = (i / 64, 1u64 << (i % 64));
        let fresh = self.0[word] & bit == 0;
        self.0[word] |= bit;
        fresh
    }
}

impl Graph {
    /// Validates `decls` and builds the graph.
    ///
    /// Checks run in this order, and the first failure is returned: duplicate ids, unknown
    /// dependencies, cycles (one concrete cycle is reported), then template references that are not
    /// transitive dependencies (a step referencing itself included). An empty list is a valid,
    /// empty graph.
    pub fn build(decls: Vec<StepDecl>) -> DefResult<Graph> {
        let n = decls.len();
        let ids: Vec<Arc<str>> = decls.iter().map(|d| Arc::from(d.id.as_str())).collect();
        let mut index = HashMap::with_capacity(n);
        for (i, decl) in decls.iter().enumerate() {
            if index.insert(Arc::clone(&ids[i]), i).is_some() {
                return Err(DefinitionError::DuplicateId {
                    id: decl.id.clone(),
                });
            }
        }

        let mut dep_lists = Vec::with_capacity(n);
        // `last_seen[d] == i + 1` means step i already lists d: dedups in O(E) without a set per step.
        let mut last_seen = vec![0usize; n];
        for (i, decl) in decls.iter().enumerate() {
            let mut list = Vec::with_capacity(decl.deps.len());
            for dep in &decl.deps {
                let Some(&d) = index.get(dep.as_str()) else {
                    return Err(DefinitionError::UnknownDependency {
                        step: decl.id.clone(),
                        dependency: dep.clone(),
                    });
                };
                if last_seen[d] != i + 1 {
                    last_seen[d] = i + 1;
                    list.push(d);
                }
            }
            dep_lists.push(list);
        }

        let mut dependent_lists = vec![Vec::new(); n];
        for (i, list) in dep_lists.iter().enumerate() {
            for &d in list {
                // Visiting i in ascending order keeps every dependents list ascending for free.
                dependent_lists[d].push(i);
            }
        }
        let deps = Adjacency::from_lists(&dep_lists);
        let dependents = Adjacency::from_lists(&dependent_lists);

        let topo = kahn(n, &deps, &dependents);
        if topo.len() < n {
            return Err(DefinitionError::Cycle {
                cycle: find_cycle(n, &deps, &topo)
                    .into_iter()
                    .map(|i| ids[i].to_string())
                    .collect(),
            });
        }
        let mut topo_pos = vec![0; n];
        for (pos, &i) in topo.iter().enumerate() {
            topo_pos[i] = pos;
        }

        // The latest-declared ancestor of each step, folded in topological order: O(V + E).
        let mut max_ancestor: Vec<Option<usize>> = vec![None; n];
        for &i in &topo {
            max_ancestor[i] = deps
                .of(i)
                .iter()
                .map(|&d| max_ancestor[d].max(Some(d)))
                .max()
                .flatten();
        }
        let declared_after_ancestors = max_ancestor
            .iter()
            .enumerate()
            .map(|(i, m)| m.is_none_or(|m| m < i))
            .collect();

        let chains = ChainForest::new(n, &deps, &dependents);
        let graph = Graph {
            chains,
            roots: (0..n).filter(|&i| deps.of(i).is_empty()).collect(),
            sinks: (0..n).filter(|&i| dependents.of(i).is_empty()).collect(),
            ids,
            index,
            deps,
            dependents,
            topo,
            topo_pos,
            declared_after_ancestors,
        };
        graph.check_refs(&decls)?;
        Ok(graph)
    }

    /// Every `{x.result}` must name a transitive dependency: anything else would read an output
    /// that may not exist yet (a race) or ever.
    fn check_refs(&self, decls: &[StepDecl]) -> DefResult<()> {
        for (i, decl) in decls.iter().enumerate() {
            for reference in &decl.refs {
                let ok = self
                    .index_of(reference)
                    .is_some_and(|r| self.is_ancestor(r, i));
                if !ok {
                    return Err(DefinitionError::ReferenceNotAncestor {
                        step: decl.id.clone(),
                        reference: reference.clone(),
                    });
                }
            }
        }
        Ok(())
    }

    /// Number of steps.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// True for a workflow with no steps.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The id of step `i`. Panics when `i >= len()`.
    pub fn id(&self, i: usize) -> &str {
        &self.ids[i]
    }

    /// The id of step `i` as the graph holds it, to share rather than copy.
    pub fn shared_id(&self, i: usize) -> &Arc<str> {
        &self.ids[i]
    }

    /// The declaration index of the step called `id`.
    pub fn index_of(&self, id: &str) -> Option<usize> {
        self.index.get(id).copied()
    }

    /// Direct dependencies of step `i`, duplicates removed, in the order they were declared.
    pub fn deps(&self, i: usize) -> &[usize] {
        self.deps.of(i)
    }

    /// Steps that directly depend on step `i`, ascending by declaration index.
    pub fn dependents(&self, i: usize) -> &[usize] {
        self.dependents.of(i)
    }

    /// Steps with no dependencies, ascending.
    pub fn roots(&self) -> &[usize] {
        &self.roots
    }

    /// Steps nothing depends on, ascending.
    pub fn sinks(&self) -> &[usize] {
        &self.sinks
    }

    /// All steps, dependencies first; among steps that are ready at the same point the
    /// earliest-declared comes first, so a workflow declared in dependency order keeps its order.
    pub fn topo_order(&self) -> &[usize] {
        &self.topo
    }

    /// The transitive dependencies of step `i` (not `i` itself), ascending by declaration index.
    /// Walked on demand: O(ancestors + their edges), plus a bit per step of scratch.
    pub fn ancestors(&self, i: usize) -> Vec<usize> {
        let mut found = self.reach(i, &self.deps);
        found.sort_unstable();
        found
    }

    /// The transitive dependents of step `i` (not `i` itself), ascending by declaration index.
    pub fn descendants(&self, i: usize) -> Vec<usize> {
        let mut found = self.reach(i, &self.dependents);
        found.sort_unstable();
        found
    }

    /// True when `a` is a transitive dependency of `of` (a step is not its own ancestor).
    pub fn is_ancestor(&self, a: usize, of: usize) -> bool {
        let floor = self.topo_pos[a];
        if floor >= self.topo_pos[of] {
            return false;
        }
        let mut seen = BitSet::new(self.len());
        let mut stack = vec![of];
        while let Some(u) = stack.pop() {
            if self.chains.above(a, u) {
                return true;
            }
            // Below its chain's top a step has a single dependency, so the rest of u's ancestors
            // are the top's: jump there instead of walking the chain.
            for &d in self.deps(self.chains.top[u]) {
                if d == a {
                    return true;
                }
                // Everything reachable from d sits before d in topological order, so a step placed
                // before `a` cannot lead back to it.
                if self.topo_pos[d] > floor && seen.insert(d) {
                    stack.push(d);
                }
            }
        }
        false
    }

    /// True when step `i` is declared after every one of its ancestors, so merging its ancestors in
    /// declaration order and then its own output is the same as merging all of them in declaration
    /// order: a single-dependency child's state can then be derived incrementally from `i`'s.
    /// Precomputed in [`Graph::build`] in O(V + E).
    pub fn declared_after_ancestors(&self, i: usize) -> bool {
        self.declared_after_ancestors[i]
    }

    /// Everything reachable from `start` along `edges`, `start` excluded, unordered.
    fn reach(&self, start: usize, edges: &Adjacency) -> Vec<usize> {
        let mut seen = BitSet::new(self.len());
        let mut found = Vec::new();
        let mut stack = vec![start];
        while let Some(u) = stack.pop() {
            for &v in edges.of(u) {
                if seen.insert(v) {
                    found.push(v);
                    stack.push(v);
                }
            }
        }
        found
    }
}

/// Kahn's algorithm, always taking the earliest-declared ready step. Returns fewer than `n` steps
/// when there is a cycle (the steps on or behind a cycle never become ready).
fn kahn(n: usize, deps: &Adjacency, dependents: &Adjacency) -> Vec<usize> {
    let mut missing: Vec<usize> = (0..n).map(|i| deps.of(i).len()).collect();
    let mut ready: BinaryHeap<Reverse<usize>> =
        (0..n).filter(|&i| missing[i] == 0).map(Reverse).collect();
    let mut order = Vec::with_capacity(n);
    while let Some(Reverse(i)) = ready.pop() {
        order.push(i);
        for &c in dependents.of(i) {
            missing[c] -= 1;
            if missing[c] == 0 {
                ready.push(Reverse(c));
            }
        }
    }
    order
}

/// One concrete cycle among the steps Kahn's algorithm could not place, in dependency order and
/// starting at its earliest-declared step.
///
/// Every unplaced step still waits for at least one unplaced dependency, so walking from any of
/// them to such a dependency must eventually revisit a step: that loop is a cycle. The walk is
/// iterative and visits each step at most once.
fn find_cycle(n: usize, deps: &Adjacency, placed_steps: &[usize]) -> Vec<usize> {
    let mut placed = vec![false; n];
    for &i in placed_steps {
        placed[i] = true;
    }
    let start = (0..n)
        .find(|&i| !placed[i])
        .expect("find_cycle is called only when some step is unplaced");
    const OFF_PATH: usize = usize::MAX;
    let mut path_pos = vec![OFF_PATH; n];
    let mut path = Vec::new();
    let mut cur = start;
    while path_pos[cur] == OFF_PATH {
        path_pos[cur] = path.len();
        path.push(cur);
        cur = *deps
            .of(cur)
            .iter()
            .find(|&&d| !placed[d])
            .expect("an unplaced step has an unplaced dependency");
    }
    // The walk went from each step to one of its dependencies; reverse it so each step is a
    // dependency of the next, then rotate so the earliest-declared step leads.
    let mut cycle: Vec<usize> = path[path_pos[cur]..].iter().rev().copied().collect();
    let lead = (0..cycle.len()).min_by_key(|&k| cycle[k]).unwrap_or(0);
    cycle.rotate_left(lead);
    cycle
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decl(id: &str, deps: &[&str]) -> StepDecl {
        StepDecl {
            id: id.into(),
            deps: deps.iter().map(|s| s.to_string()).collect(),
            refs: Vec::new(),
        }
    }

    fn with_refs(mut d: StepDecl, refs: &[&str]) -> StepDecl {
        d.refs = refs.iter().map(|s| s.to_string()).collect();
        d
    }

    fn build_err(decls: Vec<StepDecl>) -> String {
        Graph::build(decls).unwrap_err().to_string()
    }

    /// a -> {b, c} -> d
    fn diamond() -> Graph {
        Graph::build(vec![
            decl("a", &[]),
            decl("b", &["a"]),
            decl("c", &["a"]),
            decl("d", &["b", "c"]),
        ])
        .unwrap()
    }

    fn chain(n: usize) -> Vec<StepDecl> {
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
            .collect()
    }

    #[test]
    fn graph_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Graph>();
    }

    #[test]
    fn empty_workflow_is_a_valid_empty_graph() {
        let g = Graph::build(vec![]).unwrap();
        assert!(g.is_empty());
        assert_eq!(g.len(), 0);
        assert!(g.topo_order().is_empty());
        assert!(g.roots().is_empty());
    }

    #[test]
    fn duplicate_id_is_rejected() {
        let err = build_err(vec![decl("x", &[]), decl("y", &[]), decl("x", &[])]);
        assert_eq!(err, "duplicate step id 'x'");
    }

    #[test]
    fn duplicate_id_is_checked_before_unknown_dependency() {
        let err = build_err(vec![decl("x", &["zz"]), decl("x", &[])]);
        assert_eq!(err, "duplicate step id 'x'");
    }

    #[test]
    fn unknown_dependency_is_rejected() {
        let err = build_err(vec![decl("a", &[]), decl("b", &["a", "zz"])]);
        assert_eq!(err, "step 'b' depends on unknown step 'zz'");
    }

    #[test]
    fn unknown_dependency_is_checked_before_cycles() {
        let err = build_err(vec![decl("a", &["b"]), decl("b", &["a", "zz"])]);
        assert_eq!(err, "step 'b' depends on unknown step 'zz'");
    }

    #[test]
    fn two_step_cycle_is_reported_from_the_first_declared() {
        let err = build_err(vec![decl("a", &["b"]), decl("b", &["a"])]);
        assert_eq!(err, "dependency cycle: a -> b -> a");
    }

    #[test]
    fn three_step_cycle_is_reported_in_dependency_order() {
        // b needs a, c needs b, a needs c.
        let err = build_err(vec![
            decl("a", &["c"]),
            decl("b", &["a"]),
            decl("c", &["b"]),
        ]);
        assert_eq!(err, "dependency cycle: a -> b -> c -> a");
    }

    #[test]
    fn self_dependency_is_a_cycle() {
        let err = build_err(vec![decl("root", &[]), decl("a", &["a"])]);
        assert_eq!(err, "dependency cycle: a -> a");
    }

    #[test]
    fn cycle_behind_an_acyclic_prefix_reports_only_the_loop() {
        // x waits on the cycle b <-> c but is not part of it.
        let err = build_err(vec![
            decl("x", &["c"]),
            decl("a", &[]),
            decl("b", &["a", "c"]),
            decl("c", &["b"]),
        ]);
        assert_eq!(err, "dependency cycle: b -> c -> b");
    }

    #[test]
    fn cycle_is_checked_before_references() {
        let err = build_err(vec![
            with_refs(decl("a", &["b"]), &["nope"]),
            decl("b", &["a"]),
        ]);
        assert_eq!(err, "dependency cycle: a -> b -> a");
    }

    #[test]
    fn reference_to_non_ancestor_is_rejected() {
        let err = build_err(vec![
            decl("a", &[]),
            decl("x", &[]),
            with_refs(decl("c", &["a"]), &["x"]),
        ]);
        assert_eq!(
            err,
            "step 'c' references '{x.result}' but 'x' is not one of its dependencies \
             (direct or transitive)"
        );
    }

    #[test]
    fn reference_to_a_descendant_is_rejected() {
        let err = build_err(vec![with_refs(decl("a", &[]), &["b"]), decl("b", &["a"])]);
        assert!(err.starts_with("step 'a' references '{b.result}'"), "{err}");
    }

    #[test]
    fn self_reference_is_rejected() {
        let err = build_err(vec![with_refs(decl("a", &[]), &["a"])]);
        assert!(err.starts_with("step 'a' references '{a.result}'"), "{err}");
    }

    #[test]
    fn reference_to_unknown_step_is_rejected() {
        let err = build_err(vec![with_refs(decl("a", &[]), &["ghost"])]);
        assert!(
            err.starts_with("step 'a' references '{ghost.result}'"),
            "{err}"
        );
    }

    #[test]
    fn references_to_direct_and_transitive_ancestors_are_accepted() {
        let g = Graph::build(vec![
            decl("a", &[]),
            decl("b", &["a"]),
            with_refs(decl("c", &["b"]), &["b", "a"]),
        ]);
        assert!(g.is_ok());
    }

    #[test]
    fn diamond_deps_and_dependents() {
        let g = diamond();
        assert_eq!(g.deps(3), &[1, 2]);
        assert_eq!(g.dependents(0), &[1, 2]);
        assert_eq!(g.roots(), &[0]);
        assert_eq!(g.sinks(), &[3]);
        assert_eq!(g.topo_order(), &[0, 1, 2, 3]);
    }

    #[test]
    fn ids_and_indices_round_trip() {
        let g = diamond();
        assert_eq!(g.id(2), "c");
        assert_eq!(g.index_of("c"), Some(2));
        assert_eq!(g.index_of("nope"), None);
    }

    #[test]
    fn deps_are_deduplicated_in_declared_order() {
        let g = Graph::build(vec![
            decl("a", &[]),
            decl("b", &[]),
            decl("c", &["b", "a", "b", "a"]),
        ])
        .unwrap();
        assert_eq!(g.deps(2), &[1, 0]);
        assert_eq!(g.dependents(1), &[2]);
    }

    #[test]
    fn dependents_are_ascending_whatever_the_declared_dep_order() {
        let g = Graph::build(vec![decl("c", &["a"]), decl("a", &[]), decl("b", &["a"])]).unwrap();
        assert_eq!(g.dependents(1), &[0, 2]);
    }

    #[test]
    fn topo_order_keeps_declaration_order_among_independent_steps() {
        let g = Graph::build(vec![decl("x", &[]), decl("y", &[]), decl("z", &[])]).unwrap();
        assert_eq!(g.topo_order(), &[0, 1, 2]);
    }

    #[test]
    fn topo_order_puts_forward_declared_dependencies_first() {
        // a needs c, which is declared last; b is independent.
        let g = Graph::build(vec![decl("a", &["c"]), decl("b", &[]), decl("c", &[])]).unwrap();
        assert_eq!(g.topo_order(), &[1, 2, 0]);
    }

    #[test]
    fn topo_order_prefers_the_earliest_declared_ready_step() {
        // After r: both d (index 1) and e (index 3) are ready; d goes first, then its dependent
        // f (index 2) beats e.
        let g = Graph::build(vec![
            decl("r", &[]),
            decl("d", &["r"]),
            decl("f", &["d"]),
            decl("e", &["r"]),
        ])
        .unwrap();
        assert_eq!(g.topo_order(), &[0, 1, 2, 3]);
    }

    #[test]
    fn ancestors_are_transitive_and_ascending() {
        let g = Graph::build(vec![
            decl("d", &["c"]),
            decl("a", &[]),
            decl("b", &["a"]),
            decl("c", &["b", "a"]),
            decl("other", &[]),
        ])
        .unwrap();
        assert_eq!(g.ancestors(0), vec![1, 2, 3]);
        assert!(g.ancestors(1).is_empty());
    }

    #[test]
    fn descendants_are_transitive_and_ascending() {
        let g = diamond();
        assert_eq!(g.descendants(0), vec![1, 2, 3]);
        assert_eq!(g.descendants(2), vec![3]);
        assert!(g.descendants(3).is_empty());
    }

    #[test]
    fn is_ancestor_follows_paths_only_upward() {
        let g = diamond();
        assert!(g.is_ancestor(0, 3));
        assert!(g.is_ancestor(1, 3));
        assert!(!g.is_ancestor(1, 2));
        assert!(!g.is_ancestor(3, 0));
        assert!(!g.is_ancestor(2, 2));
    }

    #[test]
    fn declared_after_ancestors_is_false_for_a_forward_dependency() {
        let g = Graph::build(vec![
            decl("a", &[]),
            decl("b", &["c"]),
            decl("c", &["a"]),
            decl("d", &["b"]),
        ])
        .unwrap();
        assert!(g.declared_after_ancestors(0));
        assert!(!g.declared_after_ancestors(1));
        assert!(g.declared_after_ancestors(2));
        // d (3) comes after a, b and c even though b does not come after c.
        assert!(g.declared_after_ancestors(3));
    }

    #[test]
    fn chain_of_10000_builds_and_walks() {
        let g = Graph::build(chain(10_000)).unwrap();
        assert_eq!(g.topo_order().len(), 10_000);
        assert_eq!(g.ancestors(9_999).len(), 9_999);
        assert!(g.is_ancestor(0, 9_999));
        assert!((0..10_000).all(|i| g.declared_after_ancestors(i)));
    }

    #[test]
    fn chain_of_10000_referencing_its_first_step_builds() {
        let mut decls = chain(10_000);
        for d in decls.iter_mut().skip(1) {
            d.refs = vec!["s0".into(), d.deps[0].clone()];
        }
        assert!(Graph::build(decls).is_ok());
    }

    #[test]
    fn fan_out_of_10000_with_a_join_builds() {
        let mut decls = vec![decl("root", &[])];
        decls.extend((0..10_000).map(|i| StepDecl {
            id: format!("w{i}"),
            deps: vec!["root".into()],
            refs: vec!["root".into()],
        }));
        decls.push(StepDecl {
            id: "sum".into(),
            deps: (0..10_000).map(|i| format!("w{i}")).collect(),
            refs: vec![],
        });
        let g = Graph::build(decls).unwrap();
        assert_eq!(g.dependents(0).len(), 10_000);
        assert_eq!(g.sinks(), &[10_001]);
        assert_eq!(g.ancestors(10_001).len(), 10_001);
    }
}
