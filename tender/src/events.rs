//! The epoll set and timerfd behind `solo5_yield` (spec §4): the guest arms the timer with an
//! absolute CLOCK_MONOTONIC deadline and waits on the epoll set, which holds the timer and
//! every attached network device, each tagged with its manifest index.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};

use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags};
use nix::sys::timerfd::{ClockId, TimerFd, TimerFlags};

/// `SPT_INTERNAL_TIMERFD`: the epoll data of the timer, which the guest ignores.
pub const TIMER_EVENT_DATA: u64 = 0xffff_fffe;

/// Errors creating the event fds.
#[derive(Debug, thiserror::Error)]
pub enum EventsError {
    /// epoll_create1, timerfd_create or epoll_ctl failed.
    #[error("Could not set up {what}: {source}")]
    Setup {
        /// Which step.
        what: &'static str,
        /// The cause.
        source: nix::Error,
    },
}

/// The epoll fd and timerfd the guest waits with.
pub struct EventSet {
    epoll: Epoll,
    timer: TimerFd,
}

impl EventSet {
    /// Creates the epoll set and the timer, and registers the timer.
    pub fn new() -> Result<Self, EventsError> {
        let epoll = Epoll::new(EpollCreateFlags::empty()).map_err(|source| EventsError::Setup {
            what: "epoll",
            source,
        })?;
        let timer =
            TimerFd::new(ClockId::CLOCK_MONOTONIC, TimerFlags::TFD_NONBLOCK).map_err(|source| {
                EventsError::Setup {
                    what: "timerfd",
                    source,
                }
            })?;
        epoll
            .add(
                &timer,
                EpollEvent::new(EpollFlags::EPOLLIN, TIMER_EVENT_DATA),
            )
            .map_err(|source| EventsError::Setup {
                what: "epoll for the timer",
                source,
            })?;
        Ok(EventSet { epoll, timer })
    }

    /// Registers a device fd whose readiness sets bit `index` of the guest's ready set.
    pub fn add_device(&self, fd: BorrowedFd<'_>, index: usize) -> Result<(), EventsError> {
        self.epoll
            .add(fd, EpollEvent::new(EpollFlags::EPOLLIN, index as u64))
            .map_err(|source| EventsError::Setup {
                what: "epoll for a network device",
                source,
            })
    }

    /// The epoll fd number, for the boot info and the filter.
    pub fn epoll_fd(&self) -> RawFd {
        self.epoll.0.as_raw_fd()
    }

    /// The timerfd number, for the boot info and the filter.
    pub fn timer_fd(&self) -> RawFd {
        self.timer.as_fd().as_raw_fd()
    }

    /// Leaves both fds open for the guest, which owns them from now on.
    pub fn hand_over(self) {
        // The guest keeps using the fds after the jump; they must never be closed.
        std::mem::forget(self);
    }
}
