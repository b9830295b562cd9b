// A predictor in another process, speaking the stream format (docs/FORMAT.md):
// the command is started once via /bin/sh -c; for every evaluation we write one
// frame (kind "predict", call N: x F32 [N, ...], t I64 [N], y I64 [N] when conditional)
// to its stdin and read one frame with eps F32 (same shape as x) and, for a
// learned variance, v from its stdout. Its stderr is ours. Instead of 'eps' an answer may hold
// 'x0' (x0-prediction) or 'v_pred' (v-prediction, v = sqrt(abar) eps - sqrt(1 - abar) x_0), exactly
// one of the three; it is converted at x_t and t (Parameterization.swift) to eps and x0.
//
// Nothing it does can hang us: every call (writing the request and reading the whole answer) runs
// under a watchdog that stops the predictor's process group at the deadline, which ends a blocked
// write (EPIPE) or read (end of file). An answer must match its request (shape, and the 'call'
// number when the answer carries one), and no frame may arrive unasked. When we are ended by
// SIGTERM, SIGHUP or SIGINT, the predictor's process group is ended with us.
//
// The shell is reaped only when we let go of it: until then its pid, which names its process
// group, cannot be given to another process, so no kill of ours (watchdog, signal handler) can
// reach a stranger.
//
// Not covered: a process that leaves the predictor's process group (setsid) and keeps one of its
// pipes open.
import Foundation
#if canImport(Glibc)
import Glibc
#endif

public final class ExternalPredictor: EpsPredictor {
    public let command: String
    public let sampleShape: [Int]
    public let learnsVariance: Bool
    /// The declared type (what a chain may rely on before the first answer); answers name their own.
    public let prediction: PredictionType
    /// The schedule the timesteps index (to convert x0 and v_pred answers).
    public let schedule: Schedule
    /// Seconds allowed for each call (writing the request and reading the whole answer) before the
    /// predictor's process group is stopped.
    public let timeout: Double
    /// The shell's pid; it leads its own process group, so the whole pipeline can be stopped.
    private let pid: pid_t
    private let toChild: Int32      // its stdin
    private let fromChild: Int32    // its stdout
    private var toChildOpen = true
    private let writer: FrameWriter
    private let reader: FrameReader
    private var calls = 0
    private var closed = false
    private enum Ending { case exited(Int32), killed(Int32), gone }
    /// How the shell ended, once seen (not yet reaped: see above).
    private var ended: Ending? = nil
    /// The watchdog's state: the call it guards (0: none), its deadline, and whether it fired.
    private let watch = NSLock()
    private var guarded = 0
    private var deadline = Date.distantFuture
    private var fired = false

    public var describe: String { command }
    public var predictionType: PredictionType { prediction }

    public init(command: String, sampleShape: [Int], learnsVariance: Bool = false, timeout: Double = 600,
                schedule: Schedule = Schedule.standard(), prediction: PredictionType = .eps) throws {
        self.command = command
        self.schedule = schedule
        self.prediction = prediction
        self.sampleShape = sampleShape
        self.learnsVariance = learnsVariance
        self.timeout = timeout
        signal(SIGPIPE, SIG_IGN)   // a dead predictor must give a write error, not kill us
        var inPipe: [Int32] = [0, 0], outPipe: [Int32] = [0, 0]
        guard pipe(&inPipe) == 0 else {
            throw DDPMError("cannot create pipes for the predictor: \(String(cString: strerror(errno)))")
        }
        guard pipe(&outPipe) == 0 else {
            let why = String(cString: strerror(errno))
            Glibc.close(inPipe[0]); Glibc.close(inPipe[1])
            throw DDPMError("cannot create pipes for the predictor: \(why)")
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
        // Its own process group; SIGPIPE back to the default (ours is ignored, and an ignored
        // signal stays ignored across exec: a pipeline in the predictor would get write errors).
        posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGDEF))
        posix_spawnattr_setpgroup(&attr, 0)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        sigaddset(&defaults, SIGPIPE)
        posix_spawnattr_setsigdefault(&attr, &defaults)
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
        PredictorProcesses.register(child)
        pid = child
        toChild = inPipe[1]
        fromChild = outPipe[0]
        Pipes.enlarge(toChild)
        writer = try FrameWriter(fd: toChild, allowTerminal: true)
        reader = FrameReader(fd: fromChild, name: "predictor")
    }

    deinit { close() }

    /// Closes the predictor's stdin and waits briefly for it to exit (then stops its process group).
    public func close() {
        guard !closed else { return }
        endInput()
        release()
    }

    /// Closes the predictor's stdin and lets it exit: 5 s, then SIGTERM, 2 s, then SIGKILL.
    private func endInput() {
        closed = true
        disarm()
        Glibc.close(toChild); toChildOpen = false
        if !hasExited(within: 5) {
            kill(-pid, SIGTERM)
            if !hasExited(within: 2) { kill(-pid, SIGKILL); _ = hasExited(within: 1) }
        }
    }

    /// The end of a successful run: closes the predictor's stdin, lets it exit (as `close`), and
    /// then refuses any bytes it wrote after its last answer (a second answer to the last request,
    /// which no later request would reveal).
    public func finish() throws {
        guard !closed else { return }
        endInput()
        let extra = calls > 0 && pending()
        release()
        if extra {
            throw DDPMError("predictor '\(command)' sent a frame nobody asked for after answering call \(calls) (more than one answer per request?)")
        }
    }

    /// Stops the predictor's whole process group after a protocol failure.
    private func abort() {
        guard !closed else { return }
        closed = true
        disarm()
        kill(-pid, SIGKILL)
        _ = hasExited(within: 1)
        release()
    }

    /// Lets go of the predictor: no more kills, then the shell is reaped and the pipes closed.
    private func release() {
        PredictorProcesses.unregister(pid)
        if ended != nil { var status: Int32 = 0; _ = waitpid(pid, &status, WNOHANG) }
        if toChildOpen { Glibc.close(toChild); toChildOpen = false }
        Glibc.close(fromChild)
    }

    /// Whether the shell has ended (waiting up to `seconds`); it is left unreaped.
    private func hasExited(within seconds: Double) -> Bool {
        let end = Date().addingTimeInterval(seconds)
        while true {
            if ended != nil { return true }
            var info = siginfo_t()
            if waitid(P_PID, id_t(pid), &info, WEXITED | WNOHANG | WNOWAIT) == 0 {
                if info._sifields._sigchld.si_pid == pid {
                    let s = info._sifields._sigchld.si_status
                    ended = info.si_code == Int32(CLD_EXITED) ? .exited(s) : .killed(s)
                    return true
                }
            } else if errno != EINTR {
                ended = .gone
                return true
            }
            if Date() >= end { return false }
            usleep(2_000)
        }
    }

    /// "predictor '...' exited with status S" if it has ended by itself (waiting a little, never
    /// past the call's deadline), nil while it runs or when the watchdog ended it.
    private func exitText() -> String? {
        watch.lock(); let left = deadline.timeIntervalSinceNow; watch.unlock()
        guard hasExited(within: min(0.5, max(0, left - 0.05))), !timedOut, let e = ended else { return nil }
        switch e {
        case .exited(let s): return "predictor '\(command)' exited with status \(s)"
        case .killed(let s): return "predictor '\(command)' was killed by signal \(s)"
        case .gone: return "predictor '\(command)' is gone"
        }
    }

    private var limit: String { "within \(formatG(timeout)) s" }

    /// Starts the watchdog for `call`: at the deadline it ends the predictor's process group.
    private func arm(_ call: Int) {
        let seconds = timeout
        watch.lock(); guarded = call; fired = false; deadline = Date().addingTimeInterval(seconds); watch.unlock()
        let group = pid
        DispatchQueue.global().asyncAfter(deadline: .now() + seconds) { [weak self] in
            guard let self else { return }
            self.watch.lock()
            defer { self.watch.unlock() }
            guard self.guarded == call else { return }
            self.fired = true
            kill(-group, SIGKILL)
        }
    }

    private func disarm() { watch.lock(); guarded = 0; deadline = .distantFuture; watch.unlock() }

    private var timedOut: Bool { watch.lock(); defer { watch.unlock() }; return fired }

    /// Whether bytes are waiting on the predictor's stdout (an end of file is not data).
    private func pending() -> Bool {
        var ready = pollfd(fd: fromChild, events: Int16(POLLIN), revents: 0)
        return poll(&ready, 1, 0) > 0 && ready.revents & Int16(POLLIN) != 0
    }

    private func fail(_ message: String) -> DDPMError {
        abort()
        return DDPMError(message)
    }

    public func predict(x: [Float], t: [Int], y: [Int]?) throws -> Prediction {
        guard !closed else { throw DDPMError("predictor '\(command)' is closed") }
        let n = t.count
        let shape = [n] + sampleShape
        guard x.count == shape.reduce(1, *) else { throw DDPMError("predictor request: \(x.count) values for shape \(shape)") }
        // Bytes waiting before we ask are a frame nobody asked for: a second answer to the last
        // request. (Before the first request they are taken as its answer: a predictor may write
        // its answer before it reads the request, and whether we would see it first is a race.)
        if calls > 0, pending() {
            throw fail("predictor '\(command)' sent a frame nobody asked for after answering call \(calls) (more than one answer per request?)")
        }
        calls += 1
        let call = calls
        var f = Frame(metadata: ["kind": "predict", "call": String(call)])
        f["x"] = Tensor(x, shape: shape)
        f["t"] = Tensor(t.map { Int64($0) }, shape: [n])
        if let y { f["y"] = Tensor(y.map { Int64($0) }, shape: [n]) }
        arm(call)
        defer { disarm() }
        do { try writer.write(f) } catch {
            if timedOut { throw fail("predictor '\(command)' did not read request \(call) \(limit) (stopped)") }
            if let ended = exitText() { throw fail("\(ended) (it stopped reading its input at call \(call))") }
            throw fail("predictor '\(command)' stopped reading its input at call \(call) (stopped)")
        }
        let next: Frame?
        do { next = try reader.next() } catch {
            if timedOut { throw fail("predictor '\(command)' sent only part of its answer to call \(call) \(limit) (stopped)") }
            var why = (error as? DDPMError)?.message ?? "\(error)"
            if why.hasPrefix("predictor: ") { why.removeFirst("predictor: ".count) }
            throw fail("bad answer from the predictor '\(command)' at call \(call): \(why)")
        }
        guard let answer = next else {
            if timedOut { throw fail("predictor '\(command)' gave no answer \(limit) at call \(call) (stopped)") }
            if let ended = exitText() { throw fail("\(ended) without answering call \(call)") }
            throw fail("predictor '\(command)' closed its output without answering call \(call) (stopped)")
        }
        // Complete only as the watchdog fired: the predictor has been stopped, the next call would fail.
        if timedOut { throw fail("predictor '\(command)' gave no answer \(limit) at call \(call) (stopped)") }
        if let c = answer.metadata["call"], c != String(call) {
            throw fail("predictor '\(command)' answered call \(c) when call \(call) was asked (answers out of step with requests)")
        }
        // The answer's type: which of 'eps', 'x0', 'v_pred' it holds (exactly one).
        let given = [("eps", PredictionType.eps), ("x0", .x0), ("v_pred", .v)].filter { answer[$0.0] != nil }
        guard given.count == 1, let (name, type) = given.first, let out = answer[name] else {
            if given.count > 1 {
                throw fail("predictor '\(command)' answer \(call) holds \(given.map { "'\($0.0)'" }.joined(separator: " and ")); give exactly one of 'eps', 'x0', 'v_pred'")
            }
            throw fail("predictor '\(command)' answer \(call) has no 'eps' tensor (nor 'x0' or 'v_pred'; it has: \(answer.names.isEmpty ? "none" : answer.names.joined(separator: ", ")))")
        }
        guard out.shape == shape else {
            throw fail("predictor '\(command)' answered '\(name)' of shape \(out.shape), expected \(shape)")
        }
        guard out.dtype == .f32 || out.dtype == .f64 else { throw fail("predictor '\(command)' answered '\(name)' as \(out.dtype.rawValue), expected F32") }
        if let bad = t.first(where: { $0 < 0 || $0 >= schedule.T }) {
            throw fail("predictor request: timestep \(bad) outside 0 ... \(schedule.T - 1)")
        }
        var v: [Float]? = nil
        if let vt = answer["v"] {
            guard vt.shape == shape else { throw fail("predictor '\(command)' answered 'v' of shape \(vt.shape), expected \(shape)") }
            guard vt.dtype == .f32 || vt.dtype == .f64 else { throw fail("predictor '\(command)' answered 'v' as \(vt.dtype.rawValue), expected F32") }
            v = vt.floats
        }
        return Parameterization.prediction(raw: Prediction(eps: out.floats, v: v), x: x, alphaBar: t.map { schedule.alphaBar[$0] }, type: type)
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
            var old = sigaction()
            sigaction(sig, nil, &old)
            // An ignored signal (SIGINT and SIGHUP of a background job, nohup) stays ignored.
            if unsafeBitCast(old.__sigaction_handler.sa_handler, to: Int.self) == unsafeBitCast(SIG_IGN, to: Int.self) { continue }
            var action = sigaction()
            action.__sigaction_handler.sa_handler = { s in PredictorProcesses.end(signal: s) }
            sigemptyset(&action.sa_mask)
            action.sa_flags = 0
            sigaction(sig, &action, nil)
        }
    }

    static func unregister(_ pgid: pid_t) {
        lock.lock(); defer { lock.unlock() }
        groups.removeAll { $0 == pgid }
        activeGroup = groups.last ?? 0
    }

    /// Read by the signal handler (one word: no lock there).
    nonisolated(unsafe) static var activeGroup: pid_t = 0

    /// The signal handler: SIGTERM to the predictor's group, up to a second for it to go (its shell
    /// is reaped here, so that an ended group is seen as gone), then SIGKILL to whatever is left;
    /// then the signal ends us as it would have. Async-signal-safe calls only.
    private static func end(signal s: Int32) {
        let group = activeGroup
        if group > 0 {
            kill(-group, SIGTERM)
            var status: Int32 = 0
            var pause = timespec(tv_sec: 0, tv_nsec: 10_000_000)
            var gone = false
            for _ in 0..<100 {
                _ = waitpid(group, &status, WNOHANG)
                if kill(-group, 0) != 0 { gone = true; break }
                nanosleep(&pause, nil)
            }
            if !gone { kill(-group, SIGKILL) }
        }
        Glibc.signal(s, SIG_DFL)
        raise(s)
    }
}
