//! Agents' availability across calls: who is busy, who was offered last (round robin), who has
//! been idle longest.

use super::*;

/// Agents' availability, shared by every call of the service: an agent on a call is not offered
/// another; round robin and longest idle need memory across calls.
#[derive(Debug, Default)]
pub struct AgentBook {
    busy: BTreeSet<String>,
    last_end_ms: HashMap<String, u64>,
    cursor: HashMap<String, usize>,
}

impl AgentBook {
    pub fn is_busy(&self, endpoint: &str) -> bool {
        self.busy.contains(endpoint)
    }

    /// The agents to ring now for a queue, claimed as busy.
    pub(super) fn offer(
        &mut self,
        queue: &str,
        agents: &[String],
        strategy: Strategy,
    ) -> Vec<String> {
        let free: Vec<&String> = agents.iter().filter(|a| !self.busy.contains(*a)).collect();
        let chosen: Vec<String> = match strategy {
            Strategy::RingAll => free.iter().map(|a| a.to_string()).collect(),
            Strategy::RoundRobin => {
                let start = self.cursor.get(queue).copied().unwrap_or(0);
                let pick = (0..agents.len())
                    .map(|i| (start + i) % agents.len())
                    .find(|&i| !self.busy.contains(&agents[i]));
                match pick {
                    Some(i) => {
                        self.cursor
                            .insert(queue.to_string(), (i + 1) % agents.len());
                        vec![agents[i].clone()]
                    }
                    None => vec![],
                }
            }
            Strategy::LongestIdle => free
                .iter()
                .min_by_key(|a| self.last_end_ms.get(a.as_str()).copied().unwrap_or(0))
                .map(|a| vec![a.to_string()])
                .unwrap_or_default(),
        };
        for a in &chosen {
            self.busy.insert(a.clone());
        }
        chosen
    }

    pub(super) fn claim(&mut self, endpoint: &str) {
        self.busy.insert(endpoint.to_string());
    }

    pub(super) fn release(&mut self, endpoint: &str, now_ms: u64, talked: bool) {
        self.busy.remove(endpoint);
        if talked {
            self.last_end_ms.insert(endpoint.to_string(), now_ms);
        }
    }
}
