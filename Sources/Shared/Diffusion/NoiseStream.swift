// The `noise` tool's stream loop: frames holding x in, the same frames with
// x replaced by x_t plus t and eps out (docs/FORMAT.md section 3, docs/METHODS.md section 2).
import Foundation

/// Which timesteps `noise` applies.
public enum TimestepChoice: Sendable, Equatable {
    /// `-t 500` or `-t 0,250,999`: every sample at each listed t, one output frame per t per input frame.
    case list(String)
    /// `--random-t`: one t per sample, uniform on 0 ..< T, from RandomStream(purpose: .timestep).
    case random
}

public struct NoiseOptions: Sendable {
    public var seed: UInt64
    public var timesteps: TimestepChoice
    public var schedulePath: String?
    public var threads: Int

    public init(seed: UInt64 = 0, timesteps: TimestepChoice, schedulePath: String? = nil,
                threads: Int = ProcessInfo.processInfo.activeProcessorCount) {
        self.seed = seed
        self.timesteps = timesteps
        self.schedulePath = schedulePath
        self.threads = threads
    }
}

/// Reads frames from `reader`, writes the noised frames to `writer`.
/// The schedule is `--schedule`, else a leading schedule frame (consumed), else the default.
public func runNoise(_ options: NoiseOptions, reader: FrameReader, writer: FrameWriter) throws {
    let schedule = try resolveSchedule(path: options.schedulePath, reader: reader)
    var fixed: [Int]? = nil
    if case .list(let text) = options.timesteps {
        fixed = try ForwardProcess.parseTimesteps(text, T: schedule.T)
    }
    let process = ForwardProcess(schedule: schedule, seed: options.seed)
    Memory.reuseLargeAllocations()
    // Errors name the frame's position in the stream, counting a consumed schedule frame:
    // peek at the first data frame to learn its number (a frame put back does not count again).
    let before = reader.framesRead
    var frameNumber = before
    if let first = try reader.next() {
        frameNumber = (reader.framesRead == before ? before : reader.framesRead) - 1
        reader.pushBack(first)
    }
    // Read the next frame while this one is noised and written.
    let input = FramePrefetcher(reader)
    var rules = BatchRules()
    rules.ranks = Set(0...8)
    rules.timesteps = false
    rules.readLabels = false
    rules.allowEmpty = true
    var sampleIndex: UInt64 = 0
    while let frame = try input.next() {
        frameNumber += 1
        let outputs: [Frame]
        do {
            if frame.kind == "schedule" {
                throw DDPMError("frame \(frameNumber): unexpected schedule frame: a schedule frame is accepted only first on the stream, and not together with a schedule file")
            }
            let batch = try Batch(frame: frame, index: frameNumber, rules: rules)
            outputs = try noiseFrame(batch, process: process, fixed: fixed, firstIndex: sampleIndex,
                                     threads: options.threads, sampleCount: &sampleIndex)
        } catch let e as DDPMError {
            throw DDPMError("\(reader.name): \(e.message)")
        }
        for f in outputs { try writer.write(f) }
    }
}

/// Noises one validated frame; `sampleCount` advances by the frame's N.
func noiseFrame(_ batch: Batch, process: ForwardProcess, fixed: [Int]?, firstIndex: UInt64,
                threads: Int, sampleCount: inout UInt64) throws -> [Frame] {
    let frame = batch.frame
    let shape = frame["x"]!.shape
    let N = shape[0]
    let D = batch.sampleSize
    let schedule = process.schedule
    let timesteps: [[Int]] = fixed.map { list in list.map { [Int](repeating: $0, count: N) } }
        ?? [process.randomTimesteps(count: N, firstIndex: firstIndex)]
    var eps: [Float] = [], xts: [[Float]] = timesteps.map { _ in [] }
    if N > 0 && D > 0 {
        (eps, xts) = try batch.x.withUnsafeBufferPointer {
            try process.apply(x0: $0, sampleSize: D, firstIndex: firstIndex, timesteps: timesteps, threads: threads)
        }
    }
    sampleCount += UInt64(N)
    var out: [Frame] = []
    for (k, ts) in timesteps.enumerated() {
        var f = frame
        f["x"] = Tensor(xts[k], shape: shape)
        f["t"] = Tensor(ts.map { Int64($0) }, shape: [N])
        f["eps"] = Tensor(eps, shape: shape)
        if f.kind == nil { f.kind = "batch" }
        f.metadata["tool"] = "noise"
        f.metadata["seed"] = String(process.seed)
        f.metadata["t"] = fixed != nil ? String(fixed![k]) : "random"
        f.metadata["schedule"] = schedule.kind.rawValue
        f.metadata["T"] = String(schedule.T)
        f.metadata["noise_index"] = String(firstIndex)
        out.append(f)
    }
    return out
}
