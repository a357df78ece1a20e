//! Resource arithmetic on a dense form: the four base dimensions plus the
//! extended resources of this input, interned to indices so comparisons in
//! the packing loop never look names up.

use crate::model::Resources;

/// Dense resources: `[cpu millis, memory bytes, ephemeral bytes, pod slots]`
/// and one entry per extended resource named anywhere in the input.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Res {
    pub base: [u64; 4],
    pub ext: Vec<u64>,
}

pub(crate) const CPU: usize = 0;
pub(crate) const MEMORY: usize = 1;
pub(crate) const PODS: usize = 3;

impl Res {
    /// `self + add <= cap` on every dimension.
    pub fn fits_with(&self, add: &Res, cap: &Res) -> bool {
        for i in 0..4 {
            if self.base[i].saturating_add(add.base[i]) > cap.base[i] {
                return false;
            }
        }
        self.ext
            .iter()
            .zip(&add.ext)
            .zip(&cap.ext)
            .all(|((have, more), limit)| have.saturating_add(*more) <= *limit)
    }

    /// `self <= cap` on every dimension.
    pub fn fits_in(&self, cap: &Res) -> bool {
        self.base.iter().zip(&cap.base).all(|(a, b)| a <= b)
            && self.ext.iter().zip(&cap.ext).all(|(a, b)| a <= b)
    }

    pub fn add_assign(&mut self, other: &Res) {
        for i in 0..4 {
            self.base[i] = self.base[i].saturating_add(other.base[i]);
        }
        for (a, b) in self.ext.iter_mut().zip(&other.ext) {
            *a = a.saturating_add(*b);
        }
    }

    /// `self - other`, or `None` when `other` does not fit in `self`.
    pub fn checked_sub(&self, other: &Res) -> Option<Res> {
        let mut out = self.clone();
        for i in 0..4 {
            out.base[i] = self.base[i].checked_sub(other.base[i])?;
        }
        for (a, b) in out.ext.iter_mut().zip(&other.ext) {
            *a = a.checked_sub(*b)?;
        }
        Some(out)
    }

    pub fn max_assign(&mut self, other: &Res) {
        for i in 0..4 {
            self.base[i] = self.base[i].max(other.base[i]);
        }
        for (a, b) in self.ext.iter_mut().zip(&other.ext) {
            *a = (*a).max(*b);
        }
    }

    /// How full `self` leaves `cap`: the largest used fraction over the
    /// dimensions `cap` has. Used to prefer the existing node that ends fullest.
    pub fn fullness(&self, cap: &Res) -> f64 {
        let mut worst: f64 = 0.0;
        for i in 0..4 {
            if cap.base[i] > 0 {
                worst = worst.max(self.base[i] as f64 / cap.base[i] as f64);
            }
        }
        worst
    }
}

/// The extended resource names of one input, sorted, so `Res::ext[i]` is
/// `names[i]`.
#[derive(Debug, Default)]
pub(crate) struct ResourceNames {
    names: Vec<String>,
}

impl ResourceNames {
    pub fn collect<'a>(all: impl Iterator<Item = &'a Resources>) -> Self {
        let mut names: Vec<String> = Vec::new();
        for resources in all {
            for (name, _) in &resources.extended {
                names.push(name.clone());
            }
        }
        names.sort_unstable();
        names.dedup();
        ResourceNames { names }
    }

    pub fn dense(&self, resources: &Resources) -> Res {
        let mut ext = vec![0u64; self.names.len()];
        for (name, amount) in &resources.extended {
            if let Ok(i) = self.names.binary_search(name) {
                ext[i] = ext[i].saturating_add(*amount);
            }
        }
        Res {
            base: [
                resources.cpu_millis,
                resources.memory_bytes,
                resources.ephemeral_bytes,
                resources.pods,
            ],
            ext,
        }
    }

    /// A pod's requests: whatever it asks plus exactly one pod slot.
    pub fn pod_requests(&self, resources: &Resources) -> Res {
        let mut res = self.dense(resources);
        res.base[PODS] = 1;
        res
    }

    pub fn zero(&self) -> Res {
        Res {
            base: [0; 4],
            ext: vec![0; self.names.len()],
        }
    }

    pub fn sparse(&self, res: &Res) -> Resources {
        Resources {
            cpu_millis: res.base[CPU],
            memory_bytes: res.base[MEMORY],
            ephemeral_bytes: res.base[2],
            pods: res.base[PODS],
            extended: self
                .names
                .iter()
                .zip(&res.ext)
                .filter(|(_, amount)| **amount > 0)
                .map(|(name, amount)| (name.clone(), *amount))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resources(cpu: u64, gpu: u64) -> Resources {
        Resources {
            cpu_millis: cpu,
            memory_bytes: 10,
            extended: if gpu > 0 {
                vec![("nvidia.com/gpu".into(), gpu)]
            } else {
                vec![]
            },
            ..Resources::default()
        }
    }

    #[test]
    fn extended_resources_are_compared_by_name() {
        let names = ResourceNames::collect([resources(1, 1)].iter());
        let node = names.dense(&resources(1000, 1));
        let pod = names.pod_requests(&resources(500, 1));
        let mut used = names.zero();
        assert!(used.fits_with(
            &pod,
            &Res {
                base: [1000, 10, 0, 10],
                ..node.clone()
            }
        ));
        used.add_assign(&pod);
        let cap = Res {
            base: [1000, 10, 0, 10],
            ..node
        };
        assert!(!used.fits_with(&pod, &cap), "the single gpu is taken");
    }

    #[test]
    fn every_pod_takes_one_slot() {
        let names = ResourceNames::default();
        let pod = names.pod_requests(&Resources::default());
        assert_eq!(pod.base[PODS], 1);
        let cap = Res {
            base: [0, 0, 0, 1],
            ext: vec![],
        };
        assert!(names.zero().fits_with(&pod, &cap));
        assert!(!pod.fits_with(&pod, &cap));
    }

    #[test]
    fn checked_sub_refuses_to_go_negative() {
        let a = Res {
            base: [1, 1, 1, 1],
            ext: vec![],
        };
        let b = Res {
            base: [2, 0, 0, 0],
            ext: vec![],
        };
        assert_eq!(a.checked_sub(&b), None);
        assert_eq!(
            b.checked_sub(&Res {
                base: [1, 0, 0, 0],
                ext: vec![]
            })
            .map(|r| r.base),
            Some([1, 0, 0, 0])
        );
    }
}
