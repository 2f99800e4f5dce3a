// Package timeutil is the injectable source of physical time: a TimeSource
// reads the time and makes timers and tickers. Code that waits, measures a
// rate, rate-limits or computes a deadline takes one instead of calling the
// time package, so tests (and, later, a simulator) can run it on a
// ManualTimeSource that moves only when told to.
//
//   - DefaultTimeSource is the real clock (the time package).
//   - ManualTimeSource starts at a given instant and moves only in Advance
//     or AdvanceTo, which fire, in deadline order, every timer and ticker
//     that came due. A goroutine waiting on a manual timer waits until the
//     test advances past its deadline; NumTimers tells the test how many
//     are waiting.
//   - Sleep waits on a TimeSource's timer or a context, whichever ends
//     first.
//
// The hybrid logical clock (leases.Clock) reads its physical time from the
// same TimeSource (leases.PhysicalClockOf), so one source drives both.
package timeutil
