// A training run as `train` performs it: a Trainer started from typed configs or resumed from a
// checkpoint, stepped to a total number of steps, with periodic checkpoints, the loss log, the
// progress line, and -- when a step fails -- the name of the last good checkpoint.
// Data-parallel (the trainer's communicator): every rank steps, rank 0 alone writes the log,
// the checkpoints, the progress and the model; at each checkpoint the ranks check that their
// weights, EMA and moments are still the same.
import Foundation

/// What a checkpoint frame fixes: the network, the training settings, the schedule, the step
/// and the data it was trained on, read and checked before anything is built.
public struct TrainCheckpoint {
    public let frame: Frame
    public let network: NetworkConfig
    public let config: TrainConfig
    public let schedule: Schedule
    /// Optimizer steps done.
    public let step: Int
    public let dataShape: [Int]
    public let dataCount: Int?

    public init(frame: Frame) throws {
        guard frame.kind == "checkpoint" else {
            throw DDPMError("expected a checkpoint (kind 'checkpoint'), got kind '\(frame.kind ?? "none")'")
        }
        let m = frame.metadata
        guard let step = Int(m["step"] ?? ""), step >= 0 else { throw DDPMError("checkpoint has no valid 'step'") }
        let arch = ModelFile.architecture(from: m)
        guard !arch.isEmpty else { throw DDPMError("checkpoint has no architecture (no 'arch.' metadata keys)") }
        self.frame = frame
        self.network = try NetworkConfig(architecture: arch)
        self.config = try TrainConfig(metadata: m)
        try config.validate()
        self.schedule = try ModelFile.schedule(of: frame)
        self.step = step
        self.dataShape = (m["data_shape"] ?? "").split(separator: ",").compactMap { Int($0) }
        self.dataCount = Int(m["data_count"] ?? "")
    }

    /// The data must be what the checkpoint was trained on (its shape and size): the data order
    /// of step k is a function of the example count.
    public func check(data: TrainingData) throws {
        guard dataShape == data.sampleShape, dataCount == data.count else {
            throw DDPMError("the checkpoint was trained on \(dataCount ?? 0) samples of shape \(dataShape), the data has \(data.count) of shape \(data.sampleShape)")
        }
    }

    /// A trainer in the checkpoint's state (raw weights, EMA, AdamW moments, step) with `config`
    /// (the checkpoint's own unless the caller changed what may change).
    public func trainer(data: TrainingData, network: NetworkConfig? = nil, config: TrainConfig? = nil,
                        communicator: Communicator? = nil) throws -> Trainer {
        try check(data: data)
        let trainer = try Trainer(network: try (network ?? self.network).make(), schedule: schedule, data: data,
                                  config: config ?? self.config, communicator: communicator)
        try trainer.restore(checkpoint: frame)
        return trainer
    }
}

public final class TrainJob {
    /// Steps of a run (the total) and the checkpoint period, by default.
    public static let defaultSteps = 1000
    public static let defaultCheckpointEvery = 1000

    public let trainer: Trainer
    /// The total number of steps (a resumed run counts the checkpoint's).
    public let steps: Int
    public let checkpoint: String?
    public let every: Int
    public let log: String?
    public let quiet: Bool
    /// Restored from a checkpoint file (the log is appended to).
    public let resumed: Bool
    /// The newest checkpoint on disk: the resumed one until this run writes its own.
    public private(set) var lastCheckpoint: (step: Int, path: String)?
    /// This process writes the log, checkpoints, progress and model: rank 0 (or the only process).
    public var writes: Bool { (trainer.communicator?.rank ?? 0) == 0 }

    /// `resumedFrom`: the checkpoint file the trainer was restored from (the log is then
    /// appended to, and a failure before the first new checkpoint names that file).
    public init(trainer: Trainer, steps: Int, checkpoint: String? = nil, every: Int = TrainJob.defaultCheckpointEvery,
                log: String? = nil, resumedFrom: String? = nil, quiet: Bool = false) throws {
        guard steps >= trainer.step else {
            throw DDPMError("\(steps) steps in total are fewer than the \(trainer.step) steps already done")
        }
        guard every > 0 else { throw DDPMError("the checkpoint period must be at least 1 step, got \(every)") }
        self.trainer = trainer
        self.steps = steps
        self.checkpoint = checkpoint
        self.every = every
        self.log = log
        self.quiet = quiet
        self.resumed = resumedFrom != nil
        self.lastCheckpoint = resumedFrom.map { (trainer.step, $0) }
    }

    /// A fresh run: the network built from `network` (initial weights from its seed).
    public convenience init(network: NetworkConfig, config: TrainConfig, schedule: Schedule, data: TrainingData,
                            steps: Int, checkpoint: String? = nil, every: Int = TrainJob.defaultCheckpointEvery,
                            log: String? = nil, quiet: Bool = false, communicator: Communicator? = nil) throws {
        let trainer = try Trainer(network: try network.make(), schedule: schedule, data: data, config: config,
                                  communicator: communicator)
        try self.init(trainer: trainer, steps: steps, checkpoint: checkpoint, every: every, log: log, quiet: quiet)
    }

    /// Trains to `steps`: a `step,loss` line per step into the log (created with its header, or
    /// appended to when resuming), a checkpoint every `every` steps and at the end, progress on
    /// stderr. Returns the model (or classifier) frame. A failing step throws its message plus
    /// where the last checkpoint is. Only a writing rank (`writes`) logs, checkpoints and reports.
    public func run() throws -> Frame {
        let logFD = writes ? try openLog() : nil
        defer { if let logFD { close(logFD) } }
        var logBuffer = ""
        // Every write of the log is checked (a full disk is an error, not a shorter log).
        func writeLog() throws {
            if let logFD, !logBuffer.isEmpty { try TextOutput(fd: logFD).write(logBuffer); logBuffer = "" }
        }
        func flushLog() { try? writeLog() }
        let first = trainer.step
        let progress = Progress(label: "train", total: steps - first, quiet: quiet || !writes)
        let start = Date()
        var recent = 0.0, recentCount = 0
        var best = Double.infinity, warned = false
        // The frame to write at step k, refused when anything in it is non-finite.
        func finiteFrame(checkpoint: Bool, step k: Int) throws -> Frame {
            if let bad = trainer.nonFiniteState() {
                flushLog()
                let kept = lastCheckpoint.map { "; the last finite checkpoint (step \($0.step)) is kept in \($0.path)" } ?? "; no checkpoint was written"
                throw DDPMError("step \(k): \(bad); nothing written" + kept)
            }
            return trainer.frame(checkpoint: checkpoint)
        }
        // A checkpoint at step k: every rank's state must still be the same (one gather of a hash).
        func saveCheckpoint(_ path: String, step k: Int) throws {
            if let comm = trainer.communicator {
                try comm.agree("the training state (weights, EMA, moments) at step \(k)", fingerprint: trainer.stateFingerprint())
            }
            if writes { try finiteFrame(checkpoint: true, step: k).save(path: path) }
            lastCheckpoint = (k, path)
        }
        while trainer.step < steps {
            let value: LossValue
            do { value = try trainer.trainStep() } catch let e as DDPMError {
                flushLog()
                let kept = lastCheckpoint.map { "; the last checkpoint (step \($0.step)) is kept in \($0.path)" } ?? "; no checkpoint was written"
                throw DDPMError(e.message + kept)
            }
            let k = trainer.step
            logBuffer += "\(k),\(value.loss)\n"
            if logBuffer.utf8.count > 1 << 16 { try writeLog() }
            recent += value.loss; recentCount += 1
            best = min(best, value.loss)
            if let checkpoint, k % every == 0 || k == steps {
                try saveCheckpoint(checkpoint, step: k)
            }
            if recentCount >= 50 {
                // Divergence that stays finite: the mean loss of 50 steps 100x above the lowest step loss so far.
                let mean = recent / Double(recentCount)
                if mean > 100 * best && !warned && writes {
                    warn("train", "step \(k): the mean loss of the last 50 steps (\(String(format: "%.4g", mean))) is over 100 times the lowest so far (\(String(format: "%.4g", best))): training is diverging (learning rate too high?)")
                    warned = true
                }
            }
            if k == steps || recentCount >= 50 {
                let elapsed = Date().timeIntervalSince(start)
                let exPerSec = elapsed > 0 ? Double((k - first) * trainer.config.batch) / elapsed : 0
                let acc = value.accuracy.isNaN ? "" : String(format: ", batch accuracy %.3f", value.accuracy)
                let ranks = trainer.communicator.map { c in
                    String(format: ", %d ranks, all-reduce %.1f%% of the time", c.size, elapsed > 0 ? 100 * trainer.reduceSeconds / elapsed : 0)
                } ?? ""
                progress.update(k - first, extra: String(format: "loss %.4g, %.0f ex/s", recent / Double(recentCount), exPerSec) + acc + ranks, unit: "step")
                recent = 0; recentCount = 0
            }
        }
        try writeLog()
        if let checkpoint, lastCheckpoint?.step != trainer.step || lastCheckpoint?.path != checkpoint {
            try saveCheckpoint(checkpoint, step: trainer.step)
        }
        return try finiteFrame(checkpoint: false, step: trainer.step)
    }

    /// The log file's descriptor, appending: created with the header `step,loss` unless a resumed
    /// run appends to an existing one.
    func openLog() throws -> Int32? {
        guard let log else { return nil }
        let fresh = !resumed || access(log, F_OK) != 0
        let fd = open(log, O_WRONLY | O_CREAT | O_APPEND | (fresh ? O_TRUNC : 0), 0o644)
        guard fd >= 0 else { throw DDPMError("\(log): cannot open the log file for writing: \(String(cString: strerror(errno)))") }
        if fresh {
            do { try TextOutput(fd: fd).write("step,loss\n") } catch { close(fd); throw DDPMError("\(log): \(error)") }
        }
        return fd
    }
}
