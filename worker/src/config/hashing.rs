//! argon2id's settings: the pool's threads and scheduling class, and the hash parameters.

/// The argon2 pool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HashConfig {
    /// Threads that run argon2. Default: one fewer than the cores (at least 1), which leaves a
    /// core to the broker and to session checks on small hosts.
    pub threads: usize,
    /// The parameters new hashes are made with.
    pub params: HashParams,
    /// Accept parameters below OWASP's minimum. Only for tests.
    pub allow_insecure_params: bool,
    /// The most expensive parameters a stored hash may have: a hash beyond them is refused
    /// without running argon2 (a planted hash with m = 4 GiB must not take a worker down).
    pub max_params: HashParams,
    /// The OS scheduling class of the argon2 threads.
    pub priority: HashPriority,
}

/// The OS scheduling class the argon2 threads run in ([`crate::hashing`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum HashPriority {
    /// The class follows the load: while session-tube requests flow, argon2 runs in Linux's
    /// `SCHED_IDLE` class, on the CPU time the checks (and the broker on the same host) leave,
    /// so a login flood does not slow them; otherwise in the normal class, so logins alone run
    /// at full speed and other work on the host cannot starve them. A login that has waited
    /// [`crate::hashing::PATIENCE`] for an idle-class thread is taken by a normal one. The
    /// default, measured with `authq bench login` and `authq bench flood` (BENCHMARKS.md).
    #[default]
    Auto,
    /// Always `SCHED_IDLE`: argon2 runs only on CPU time nothing else wants. While the host's
    /// CPUs are saturated by anything, logins wait (in the broker, bounded by their deadlines).
    Idle,
    /// The normal class: argon2 competes for the CPU like every other thread.
    Normal,
}

impl Default for HashConfig {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self {
            threads: cores.saturating_sub(1).max(1),
            params: HashParams::default(),
            allow_insecure_params: false,
            max_params: HashParams::MAX_DEFAULT,
            priority: HashPriority::default(),
        }
    }
}

impl HashConfig {
    /// Very cheap argon2 parameters, so tests that log in many times stay fast.
    /// Never use them anywhere else.
    pub fn insecure_fast_for_tests() -> Self {
        Self {
            threads: 2,
            params: HashParams {
                memory_kib: 64,
                iterations: 1,
                parallelism: 1,
            },
            allow_insecure_params: true,
            max_params: HashParams::MAX_DEFAULT,
            priority: HashPriority::default(),
        }
    }
}

/// argon2id cost parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HashParams {
    /// Memory per hash, in KiB (`m`).
    pub memory_kib: u32,
    /// Passes over the memory (`t`).
    pub iterations: u32,
    /// Lanes (`p`).
    pub parallelism: u32,
}

impl Default for HashParams {
    /// OWASP's recommendation for argon2id: m = 19 MiB, t = 2, p = 1.
    fn default() -> Self {
        Self {
            memory_kib: 19 * 1024,
            iterations: 2,
            parallelism: 1,
        }
    }
}

impl HashParams {
    /// The default bound on stored hashes' parameters: m = 256 MiB, t = 16, p = 8.
    pub const MAX_DEFAULT: Self = Self {
        memory_kib: 256 * 1024,
        iterations: 16,
        parallelism: 8,
    };

    /// Whether the parameters are at least OWASP's minimum (m = 19 MiB, t = 2, p = 1).
    pub fn meets_owasp_minimum(&self) -> bool {
        self.memory_kib >= 19 * 1024 && self.iterations >= 2 && self.parallelism >= 1
    }
}
