import NIOCore

/// Runs a task's jobs on one NIO event loop.
///
/// An action started with this executor as its preference runs on the loop its connection reads
/// from, so an action that does not wait for anything is read, run and answered without a thread
/// switch. Nonisolated async code the action calls stays on the loop too; anything it awaits
/// elsewhere resumes there.
final class EventLoopTaskExecutor: TaskExecutor {
    let eventLoop: any EventLoop

    init(_ eventLoop: any EventLoop) {
        self.eventLoop = eventLoop
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        eventLoop.execute {
            job.runSynchronously(on: self.asUnownedTaskExecutor())
        }
    }
}
