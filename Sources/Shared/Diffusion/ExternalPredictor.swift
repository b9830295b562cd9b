// A predictor in another process, speaking the stream format (docs/FORMAT.md):
// the command is started once via /bin/sh -c; for every evaluation we write one
// frame (kind "predict": x F32 [N, ...], t I64 [N], y I64 [N] when conditional)
// to its stdin and read one frame with eps F32 (same shape as x) and, for a
// learned variance, v from its stdout. Its stderr is ours.
//
// Nothing it does can hang us: every call (writing the request and reading the whole answer) runs
// under a watchdog that stops the predictor's process group at the deadline, which ends a blocked
// write (EPIPE) or read (end of file). An answer must match its request (shape, and the 'call'
// number when the answer carries one), and no frame may arrive unasked. When we are ended by
// SIGTERM, SIGHUP or SIGINT, the predictor's process group is ended with us.
import Foundation
#if canImport(Glibc)
import Glibc
#endif

public final class ExternalPredictor: EpsPredictor {
    public let command: String
    public let sampleShape: [Int]
    public let learnsVariance: Bool
    /// Seconds to wait for each answer before giving up (and killing the process).
    public let timeout: Double
    /// The shell's pid; it leads its own process group, so the whole pipeline can be stopped.
    private let pid: pid_t
    private var toChild: Int32      // its stdin
    private let fromChild: Int32    // its stdout
    private let writer: FrameWriter
    private let reader: FrameReader
    private var calls = 0
    private var closed = false
    private var exitStatus: Int32? = nil
    /// The watchdog's state: the call it guards (0: none) and whether it fired.
    private let watch = NSLock()
    private var guarded = 0
    private var fired = false

    public var describe: String { command }

    public init(command: String, sampleShape: [Int], learnsVariance: Bool = false, timeout: Double = 600) throws {
        self.command = command
        self.sampleShape = sampleShape
        self.learnsVariance = learnsVariance
        self.timeout = timeout
        signal(SIGPIPE, SIG_IGN)   // a dead predictor must give a write error, not kill us
        var inPipe: [Int32] = [0, 0], outPipe: [Int32] = [0, 0]
        guard pipe(&inPipe) == 0, pipe(&outPipe) == 0 else {
            throw DDPMError("cannot create pipes for the predictor: \(String(cString: strerror(errno)))")
        }
        for fd in inPipe + outPipe { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }   // dup2 in the child clears it
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, inPipe[0], 0)
        posix_spawn_file_actions_adddup2(&actions, outPipe[1], 1)
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETPGROUP))
        posix_spawnattr_setpgroup(&attr, 0)
        let words: [String] = ["/bin/sh", "-c", command]
        let args: [UnsafeMutablePointer<CChar>?] = words.map { (w: String) in strdup(w) }
        defer { args.forEach { free($0) } }
        var argv = args + [nil]
        var child: pid_t = 0
        let rc = posix_spawn(&child, "/bin/sh", &actions, &attr, &argv, environ)
        Glibc.close(inPipe[0]); Glibc.close(outPipe[1])
        guard rc == 0 else {
            Glibc.close(inPipe[1]); Glibc.close(outPipe[0])
            throw DDPMError("cannot start predictor '\(command)': \(String(cString: strerror(rc)))")
        }
        pid = child
        toChild = inPipe[1]
        fromChild = outPipe[0]
        Pipes.enlarge(toChild)
        writer = try FrameWriter(fd: toChild, allowTerminal: true)
        reader = FrameReader(fd: fromChild, name: "predictor")
        PredictorProcesses.register(child)
    }

    deinit { close() }

    /// Closes the predictor's stdin and waits briefly for it to exit (then stops its process group).
    public func close() {
        guard !closed else { return }
        closed = true
        Glibc.close(toChild)
        if !waitExit(seconds: 5) { kill(-pid, SIGTERM); if !waitExit(seconds: 2) { kill(-pid, SIGKILL); _ = waitExit(seconds: 1) } }
        Glibc.close(fromChild)
        PredictorProcesses.unregister(pid)
    }

    /// Stops the predictor's whole process group after a protocol failure.
    private func abort() {
        guard !closed else { return }
        closed = true
        kill(-pid, SIGKILL)
        _ = waitExit(seconds: 1)
        Glibc.close(toChild)
        Glibc.close(fromChild)
        PredictorProcesses.unregister(pid)
    }

    private func waitExit(seconds: Double) -> Bool {
        if exitStatus != nil { return true }
        let end = Date().addingTimeInterval(seconds)
        repeat {
            var status: Int32 = 0
            let r = waitpid(pid, &status, WNOHANG)
            if r == pid || r < 0 { exitStatus = r == pid ? status : -1; return true }
            usleep(5_000)
        } while Date() < end
        return false
    }

    private func exitDescription() -> String {
        if waitExit(seconds: 2), let s = exitStatus {
            if s == -1 { return "predictor '\(command)' is gone" }
            return (s & 0x7f) == 0 ? "predictor '\(command)' exited with status \((s >> 8) & 0xff)"
                                   : "predictor '\(command)' was killed by signal \(s & 0x7f)"
        }
        return "predictor '\(command)' closed its output"
    }

    private func noAnswer() -> String {
        "predictor '\(command)' gave no answer within \(formatG(timeout)) s at call \(calls) (stopped)"
    }

    /// Starts the watchdog for `call`: at the deadline it ends the predictor's process group.
    private func arm(_ call: Int) {
        watch.lock(); guarded = call; fired = false; watch.unlock()
        let group = pid
        DispatchQueue.global().asyncAfter(deadline: .now() + timeout) { [weak self] in
            guard let self else { return }
            self.watch.lock()
            defer { self.watch.unlock() }
            guard self.guarded == call else { return }
            self.fired = true
            kill(-group, SIGKILL)
        }
    }

    private func disarm() { watch.lock(); guarded = 0; watch.unlock() }

    private var timedOut: Bool { watch.lock(); defer { watch.unlock() }; return fired }

    private func fail(_ message: String) -> DDPMError {
        abort()
        return DDPMError(message)
    }

    public func predict(x: [Float], t: [Int], y: [Int]?) throws -> Prediction {
        guard !closed else { throw DDPMError("predictor '\(command)' is closed") }
        let n = t.count
        let shape = [n] + sampleShape
        guard x.count == shape.reduce(1, *) else { throw DDPMError("predictor request: \(x.count) values for shape \(shape)") }
        // A frame already waiting before we asked is an extra answer to an earlier call.
        var ready = pollfd(fd: fromChild, events: Int16(POLLIN), revents: 0)
        if calls > 0, poll(&ready, 1, 0) > 0, ready.revents & Int16(POLLIN) != 0 {
            throw fail("predictor '\(command)' sent a frame nobody asked for after answering call \(calls) (more than one answer per request?)")
        }
        calls += 1
        var f = Frame(metadata: ["kind": "predict", "call": String(calls)])
        f["x"] = Tensor(x, shape: shape)
        f["t"] = Tensor(t.map { Int64($0) }, shape: [n])
        if let y { f["y"] = Tensor(y.map { Int64($0) }, shape: [n]) }
        arm(calls)
        defer { disarm() }
        do { try writer.write(f) } catch {
            if timedOut { throw fail(noAnswer()) }
            let why = exitDescription()
            throw fail("\(why) (it stopped reading its input at call \(calls))")
        }
        let answer: Frame
        do {
            guard let a = try reader.next() else {
                if timedOut { throw fail(noAnswer()) }
                let why = exitDescription(); throw fail("\(why) without answering call \(calls)")
            }
            answer = a
        } catch let e as DDPMError where !e.message.hasPrefix("predictor '") {
            if timedOut { throw fail(noAnswer()) }
            throw fail("bad answer from the predictor: \(e.message)")
        }
        if let c = answer.metadata["call"], c != String(calls) {
            throw fail("predictor answered call \(c) when call \(calls) was asked (answers out of step with requests)")
        }
        guard let eps = answer["eps"] else {
            throw fail("predictor answer \(calls) has no 'eps' tensor (it has: \(answer.names.isEmpty ? "none" : answer.names.joined(separator: ", ")))")
        }
        guard eps.shape == shape else {
            throw fail("predictor answered 'eps' of shape \(eps.shape), expected \(shape)")
        }
        guard eps.dtype == .f32 || eps.dtype == .f64 else { throw fail("predictor answered 'eps' as \(eps.dtype.rawValue), expected F32") }
        var v: [Float]? = nil
        if let vt = answer["v"] {
            guard vt.shape == shape else { throw fail("predictor answered 'v' of shape \(vt.shape), expected \(shape)") }
            guard vt.dtype == .f32 || vt.dtype == .f64 else { throw fail("predictor answered 'v' as \(vt.dtype.rawValue), expected F32") }
            v = vt.floats
        }
        return Prediction(eps: eps.floats, v: v)
    }
}

/// The process groups of the running predictors, ended with us when a signal ends this process.
enum PredictorProcesses {
    private static let lock = NSLock()
    private static var groups: [pid_t] = []
    private static var installed = false

    static func register(_ pgid: pid_t) {
        lock.lock(); defer { lock.unlock() }
        groups.append(pgid)
        activeGroup = pgid
        guard !installed else { return }
        installed = true
        for sig in [SIGTERM, SIGHUP, SIGINT] {
            signal(sig) { s in
                // Async-signal-safe: kill, signal and raise only.
                if PredictorProcesses.activeGroup > 0 { kill(-PredictorProcesses.activeGroup, SIGTERM) }
                signal(s, SIG_DFL)
                raise(s)
            }
        }
    }

    static func unregister(_ pgid: pid_t) {
        lock.lock(); defer { lock.unlock() }
        groups.removeAll { $0 == pgid }
        activeGroup = groups.last ?? 0
    }

    /// Read by the signal handler (one word: no lock there).
    nonisolated(unsafe) static var activeGroup: pid_t = 0
}
