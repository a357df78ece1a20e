//! The order in which provisioning and disruption take turns: a batching
//! loop that runs a provisioning pass when a batch of new pending pods (or
//! nodes that became ready) closes, or on a resync while pods wait, and a
//! disruption sweep every interval in between, never during a pass, so no
//! claim is launched by both at once. The loop is generic over [`Turns`], so its timing is
//! tested on a paused clock with a fake.

use std::collections::BTreeSet;
use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use crate::model::batch::Batcher;

/// When the turns come.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TurnSettings {
    /// A batch closes after this long without a new pending pod...
    pub batch_idle: Duration,
    /// ...or this long after its first one.
    pub batch_max: Duration,
    /// Pending pods are solved again this often even without news (a launch
    /// that failed, capacity that came back).
    pub resync: Duration,
    /// How often disruption sweeps.
    pub disruption_interval: Duration,
}

/// What takes turns.
pub trait Turns {
    /// What a pass would act on now, by key: the pending pods it would
    /// solve for, and news that may release pods held for a node (a node
    /// that became ready). A key not seen before opens a batch.
    fn pending(&mut self) -> BTreeSet<String>;
    /// Whether the open batch, whose new keys are `arrivals`, is complete
    /// and may close once it has gone [`COMPLETE_QUIET`] without a new key,
    /// before its idle time: nothing more is on its way.
    fn complete(&mut self, arrivals: &BTreeSet<String>) -> bool {
        let _ = arrivals;
        false
    }
    /// Resolves when something a pass reads changed.
    fn changed(&mut self) -> impl Future<Output = ()>;
    /// A batch that opened `open_for` ago closed: a pass follows.
    fn batch_closed(&mut self, open_for: Duration);
    fn pass(&mut self) -> impl Future<Output = ()>;
    fn sweep(&mut self) -> impl Future<Output = ()>;
}

/// The least time between two looks at what is pending. Under a burst the
/// cluster changes hundreds of times a second, and each look costs a
/// snapshot and a scan of every pod: looked at on each change, that was
/// most of the provisioner's CPU in a 5,000-pod burst (docs/benchmarks.md,
/// "Nominated Events sampled, looks paced"), CPU the API server needed.
pub const LOOK_GAP: Duration = Duration::from_millis(100);

/// How long a complete burst must go without a new pod before its batch
/// closes ([`Turns::complete`]): one `kubectl apply` of several Deployments
/// creates them milliseconds apart, and the next one's ReplicaSet may not
/// exist yet when the first one's pods all do.
pub const COMPLETE_QUIET: Duration = Duration::from_millis(300);

/// Takes turns until the process ends.
pub async fn take_turns<T: Turns>(turns: &mut T, settings: TurnSettings) {
    let mut batcher = Batcher::new(settings.batch_idle, settings.batch_max);
    let mut seen: BTreeSet<String> = BTreeSet::new();
    // The keys that opened or extended the open batch.
    let mut arrivals: BTreeSet<String> = BTreeSet::new();
    let mut last_pass = Instant::now();
    let mut last_sweep = Instant::now();
    let mut last_look = Instant::now();
    let mut batch_opened: Option<Instant> = None;
    // The last look found the open batch complete.
    let mut complete = false;
    loop {
        let quiet_end = batcher
            .quiet_at(COMPLETE_QUIET)
            .filter(|_| complete)
            .map(Instant::from_std);
        let wake = batcher
            .deadline()
            .map(Instant::from_std)
            .unwrap_or(last_pass + settings.resync)
            .min(last_sweep + settings.disruption_interval)
            .min(quiet_end.unwrap_or(Instant::now() + settings.resync))
            .max(Instant::now() + Duration::from_millis(50));
        tokio::select! {
            _ = turns.changed() => {
                tokio::time::sleep_until((last_look + LOOK_GAP).min(wake)).await;
            }
            _ = tokio::time::sleep_until(wake) => {}
        }
        let now = Instant::now();
        last_look = now;
        let pending = turns.pending();
        let new: Vec<String> = pending
            .iter()
            .filter(|k| !seen.contains(*k))
            .cloned()
            .collect();
        if !new.is_empty() {
            batcher.observe(now.into_std());
            batch_opened.get_or_insert(now);
            arrivals.extend(new);
        }
        seen = pending;
        let resync_due = now >= last_pass + settings.resync;
        complete = batcher.is_open() && turns.complete(&arrivals);
        let quiet = batcher
            .quiet_at(COMPLETE_QUIET)
            .is_some_and(|at| now.into_std() >= at);
        if batcher.is_due(now.into_std()) || (complete && quiet) || resync_due {
            if let Some(opened) = batch_opened.take() {
                turns.batch_closed(now.duration_since(opened));
            }
            batcher.close();
            arrivals.clear();
            complete = false;
            last_pass = Instant::now();
            turns.pass().await;
        }
        if Instant::now() >= last_sweep + settings.disruption_interval {
            last_sweep = Instant::now();
            turns.sweep().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    const SETTINGS: TurnSettings = TurnSettings {
        batch_idle: Duration::from_secs(1),
        batch_max: Duration::from_secs(10),
        resync: Duration::from_secs(15),
        disruption_interval: Duration::from_secs(5),
    };

    /// Pods arrive on a schedule (seconds after the start); records when
    /// passes and sweeps ran.
    struct Fake {
        start: Instant,
        arrivals: Vec<(u64, &'static str)>,
        /// The batch is complete once this many keys arrived in it.
        complete_at: Option<usize>,
        passes: Arc<Mutex<Vec<Duration>>>,
        sweeps: Arc<Mutex<Vec<Duration>>>,
    }

    impl Turns for Fake {
        fn pending(&mut self) -> BTreeSet<String> {
            let now = self.start.elapsed();
            self.arrivals
                .iter()
                .filter(|(at, _)| Duration::from_secs(*at) <= now)
                .map(|(_, key)| (*key).to_owned())
                .collect()
        }
        async fn changed(&mut self) {
            // Wakes at each arrival, as the pod watch would.
            let now = self.start.elapsed();
            let next = self
                .arrivals
                .iter()
                .map(|(at, _)| Duration::from_secs(*at))
                .find(|at| *at > now);
            match next {
                Some(at) => tokio::time::sleep_until(self.start + at).await,
                None => std::future::pending().await,
            }
        }
        fn complete(&mut self, arrivals: &BTreeSet<String>) -> bool {
            self.complete_at.is_some_and(|n| arrivals.len() >= n)
        }
        fn batch_closed(&mut self, _: Duration) {}
        async fn pass(&mut self) {
            self.passes.lock().unwrap().push(self.start.elapsed());
        }
        async fn sweep(&mut self) {
            self.sweeps.lock().unwrap().push(self.start.elapsed());
        }
    }

    async fn run_for(
        arrivals: Vec<(u64, &'static str)>,
        seconds: u64,
    ) -> (Vec<Duration>, Vec<Duration>) {
        run_completing_at(arrivals, None, seconds).await
    }

    async fn run_completing_at(
        arrivals: Vec<(u64, &'static str)>,
        complete_at: Option<usize>,
        seconds: u64,
    ) -> (Vec<Duration>, Vec<Duration>) {
        let passes = Arc::new(Mutex::new(Vec::new()));
        let sweeps = Arc::new(Mutex::new(Vec::new()));
        let mut fake = Fake {
            start: Instant::now(),
            arrivals,
            complete_at,
            passes: passes.clone(),
            sweeps: sweeps.clone(),
        };
        let _ = tokio::time::timeout(
            Duration::from_secs(seconds),
            take_turns(&mut fake, SETTINGS),
        )
        .await;
        let passes = passes.lock().unwrap().clone();
        let sweeps = sweeps.lock().unwrap().clone();
        (passes, sweeps)
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_is_solved_once_after_the_idle_time() {
        let (passes, sweeps) = run_for(vec![(2, "a/p1"), (2, "a/p2"), (2, "a/p3")], 9).await;
        assert_eq!(passes.len(), 1, "one pass for the burst: {passes:?}");
        let at = passes[0].as_secs_f64();
        assert!((3.0..3.2).contains(&at), "closed 1 s after the burst: {at}");
        assert_eq!(sweeps.len(), 1, "a sweep every 5 s: {sweeps:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_complete_burst_is_solved_once_quiet_and_an_incomplete_one_waits() {
        let burst = vec![(2, "a/p1"), (2, "a/p2"), (2, "a/p3")];
        let (passes, _) = run_completing_at(burst.clone(), Some(3), 9).await;
        assert_eq!(passes.len(), 1, "{passes:?}");
        let at = passes[0].as_secs_f64();
        let quiet = 2.0 + COMPLETE_QUIET.as_secs_f64();
        assert!(
            (quiet..quiet + 0.2).contains(&at),
            "closed once the complete burst was quiet: {at}"
        );
        let (passes, _) = run_completing_at(burst, Some(4), 9).await;
        assert_eq!(passes.len(), 1, "{passes:?}");
        let at = passes[0].as_secs_f64();
        assert!((3.0..3.2).contains(&at), "closed 1 s after the burst: {at}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_steady_trickle_is_cut_at_the_maximum() {
        let arrivals: Vec<(u64, &'static str)> = [
            "p0", "p1", "p2", "p3", "p4", "p5", "p6", "p7", "p8", "p9", "p10", "p11", "p12",
        ]
        .iter()
        .enumerate()
        .map(|(i, key)| (1 + i as u64 * 900 / 1000, *key))
        .collect();
        // Arrivals every 0.9 s (rounded to whole seconds: at most 1 s apart)
        // never leave the batch idle for 1 s, so only the 10 s cap closes it.
        let (passes, _) = run_for(arrivals, 12).await;
        assert!(!passes.is_empty(), "the cap closes the batch");
        let first = passes[0].as_secs_f64();
        assert!(
            first <= 11.2,
            "closed by the 10 s cap after the first pod: {first}"
        );
    }

    /// Changes every millisecond, as a burst's pod watch brings them;
    /// counts the looks.
    struct Storm {
        looks: Arc<Mutex<usize>>,
    }

    impl Turns for Storm {
        fn pending(&mut self) -> BTreeSet<String> {
            *self.looks.lock().unwrap() += 1;
            BTreeSet::new()
        }
        async fn changed(&mut self) {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        fn batch_closed(&mut self, _: Duration) {}
        async fn pass(&mut self) {}
        async fn sweep(&mut self) {}
    }

    #[tokio::test(start_paused = true)]
    async fn a_storm_of_changes_is_looked_at_once_per_gap() {
        let looks = Arc::new(Mutex::new(0));
        let mut storm = Storm {
            looks: looks.clone(),
        };
        let _ =
            tokio::time::timeout(Duration::from_secs(2), take_turns(&mut storm, SETTINGS)).await;
        let looks = *looks.lock().unwrap();
        let most = (2000 / LOOK_GAP.as_millis()) as usize;
        assert!(
            (most - 2..=most).contains(&looks),
            "{looks} looks in 2 s of changes every 1 ms"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn nothing_pending_means_only_resyncs_and_sweeps() {
        let (passes, sweeps) = run_for(Vec::new(), 31).await;
        assert_eq!(passes.len(), 2, "a resync every 15 s: {passes:?}");
        assert_eq!(sweeps.len(), 6, "a sweep every 5 s: {sweeps:?}");
    }
}
