// A predictor in another process, speaking the stream format (docs/FORMAT-sample.md):
// the command is started once via /bin/sh -c; for every evaluation we write one
// frame (kind "predict": x F32 [N, ...], t I64 [N], y I64 [N] when conditional)
// to its stdin and read one frame with eps F32 (same shape as x) and, for a
// learned variance, v from its stdout. Its stderr is ours.
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
    private let process: Process
    private let input: Pipe
    private let output: Pipe
    private let writer: FrameWriter
    private let reader: FrameReader
    private var calls = 0
    private var closed = false

    public var describe: String { command }

    public init(command: String, sampleShape: [Int], learnsVariance: Bool = false, timeout: Double = 600) throws {
        self.command = command
        self.sampleShape = sampleShape
        self.learnsVariance = learnsVariance
        self.timeout = timeout
        signal(SIGPIPE, SIG_IGN)   // a dead predictor must give a write error, not kill us
        process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", command]
        input = Pipe()
        output = Pipe()
        process.standardInput = input
        process.standardOutput = output
        do { try process.run() } catch { throw DDPMError("cannot start predictor '\(command)': \(error.localizedDescription)") }
        Pipes.enlarge(input.fileHandleForWriting.fileDescriptor)
        writer = try FrameWriter(fd: input.fileHandleForWriting.fileDescriptor, allowTerminal: true)
        reader = FrameReader(fd: output.fileHandleForReading.fileDescriptor, name: "predictor")
    }

    deinit { close() }

    /// Closes the predictor's stdin and waits briefly for it to exit (then terminates it).
    public func close() {
        guard !closed else { return }
        closed = true
        try? input.fileHandleForWriting.close()
        if !waitExit(seconds: 5) { process.terminate(); _ = waitExit(seconds: 2) }
    }

    private func waitExit(seconds: Double) -> Bool {
        let end = Date().addingTimeInterval(seconds)
        while process.isRunning && Date() < end { usleep(10_000) }
        return !process.isRunning
    }

    private func exitDescription() -> String {
        if waitExit(seconds: 2) {
            let how = process.terminationReason == .uncaughtSignal ? "was killed by signal" : "exited with status"
            return "predictor '\(command)' \(how) \(process.terminationStatus)"
        }
        return "predictor '\(command)' closed its output"
    }

    public func predict(x: [Float], t: [Int], y: [Int]?) throws -> Prediction {
        guard !closed else { throw DDPMError("predictor '\(command)' is closed") }
        let n = t.count
        let shape = [n] + sampleShape
        guard x.count == shape.reduce(1, *) else { throw DDPMError("predictor request: \(x.count) values for shape \(shape)") }
        calls += 1
        var f = Frame(metadata: ["kind": "predict", "call": String(calls)])
        f["x"] = Tensor(x, shape: shape)
        f["t"] = Tensor(t.map { Int64($0) }, shape: [n])
        if let y { f["y"] = Tensor(y.map { Int64($0) }, shape: [n]) }
        do { try writer.write(f) } catch {
            throw DDPMError("\(exitDescription()) (it stopped reading its input at call \(calls))")
        }
        // Wait for the answer with a timeout, so a stuck predictor cannot hang us.
        var pfd = pollfd(fd: output.fileHandleForReading.fileDescriptor, events: Int16(POLLIN), revents: 0)
        var waited = 0.0
        while true {
            let r = poll(&pfd, 1, 1000)
            if r > 0 { break }
            if r < 0 && errno != EINTR { throw DDPMError("poll on the predictor's output failed: \(String(cString: strerror(errno)))") }
            if r == 0 {
                waited += 1
                if waited >= timeout {
                    process.terminate()
                    throw DDPMError("predictor '\(command)' gave no answer within \(Int(timeout)) s at call \(calls) (killed)")
                }
            }
        }
        let answer: Frame
        do {
            guard let a = try reader.next() else { throw DDPMError("\(exitDescription()) without answering call \(calls)") }
            answer = a
        } catch let e as DDPMError {
            throw DDPMError("bad answer from the predictor: \(e.message)")
        }
        guard let eps = answer["eps"] else {
            throw DDPMError("predictor answer \(calls) has no 'eps' tensor (it has: \(answer.names.isEmpty ? "none" : answer.names.joined(separator: ", ")))")
        }
        guard eps.shape == shape else {
            throw DDPMError("predictor answered 'eps' of shape \(eps.shape), expected \(shape)")
        }
        guard eps.dtype == .f32 || eps.dtype == .f64 else { throw DDPMError("predictor answered 'eps' as \(eps.dtype.rawValue), expected F32") }
        var v: [Float]? = nil
        if let vt = answer["v"] {
            guard vt.shape == shape else { throw DDPMError("predictor answered 'v' of shape \(vt.shape), expected \(shape)") }
            guard vt.dtype == .f32 || vt.dtype == .f64 else { throw DDPMError("predictor answered 'v' as \(vt.dtype.rawValue), expected F32") }
            v = vt.floats
        }
        return Prediction(eps: eps.floats, v: v)
    }
}
