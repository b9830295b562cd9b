// A training run as `train` performs it: a Trainer started from typed configs or resumed from a
// checkpoint, stepped to a total number of steps, with periodic checkpoints, the loss log, the
// progress line, and -- when a step fails -- the name of the last good checkpoint.
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
    public func trainer(data: TrainingData, network: NetworkConfig? = nil, config: TrainConfig? = nil) throws -> Trainer {
        try check(data: data)
        let trainer = try Trainer(network: try (network ?? self.network).make(), schedule: schedule, data: data,
                                  config: config ?? self.config)
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
                            log: String? = nil, quiet: Bool = false) throws {
        let trainer = try Trainer(network: try network.make(), schedule: schedule, data: data, config: config)
        try self.init(trainer: trainer, steps: steps, checkpoint: checkpoint, every: every, log: log, quiet: quiet)
    }

    /// Trains to `steps`: a `step,loss` line per step into the log (created with its header, or
    /// appended to when resuming), a checkpoint every `every` steps and at the end, progress on
    /// stderr. Returns the model (or classifier) frame. A failing step throws its message plus
    /// where the last checkpoint is.
    public func run() throws -> Frame {
        let logHandle = try openLog()
        var logBuffer = ""
        func flushLog() {
            if let logHandle, !logBuffer.isEmpty { logHandle.write(Data(logBuffer.utf8)); logBuffer = "" }
        }
        let first = trainer.step
        let progress = Progress(label: "train", total: steps - first, quiet: quiet)
        let start = Date()
        var recent = 0.0, recentCount = 0
        while trainer.step < steps {
            let value: LossValue
            do { value = try trainer.trainStep() } catch let e as DDPMError {
                flushLog()
                let kept = lastCheckpoint.map { "; the last checkpoint (step \($0.step)) is kept in \($0.path)" } ?? "; no checkpoint was written"
                throw DDPMError(e.message + kept)
            }
            let k = trainer.step
            logBuffer += "\(k),\(value.loss)\n"
            if logBuffer.utf8.count > 1 << 16 { flushLog() }
            recent += value.loss; recentCount += 1
            if let checkpoint, k % every == 0 || k == steps {
                try trainer.frame(checkpoint: true).save(path: checkpoint)
                lastCheckpoint = (k, checkpoint)
            }
            if k == steps || recentCount >= 50 {
                let elapsed = Date().timeIntervalSince(start)
                let exPerSec = elapsed > 0 ? Double((k - first) * trainer.config.batch) / elapsed : 0
                let acc = value.accuracy.isNaN ? "" : String(format: ", batch accuracy %.3f", value.accuracy)
                progress.update(k - first, extra: String(format: "loss %.4g, %.0f ex/s", recent / Double(recentCount), exPerSec) + acc, unit: "step")
                recent = 0; recentCount = 0
            }
        }
        flushLog()
        if let checkpoint, lastCheckpoint?.step != trainer.step || lastCheckpoint?.path != checkpoint {
            try trainer.frame(checkpoint: true).save(path: checkpoint)
            lastCheckpoint = (trainer.step, checkpoint)
        }
        return trainer.frame(checkpoint: false)
    }

    /// The log file, positioned at its end: created with the header `step,loss` unless a resumed
    /// run appends to an existing one.
    func openLog() throws -> FileHandle? {
        guard let log else { return nil }
        if !FileManager.default.fileExists(atPath: log) || !resumed {
            guard FileManager.default.createFile(atPath: log, contents: Data("step,loss\n".utf8)) else {
                throw DDPMError("\(log): cannot create the log file")
            }
        }
        guard let h = FileHandle(forWritingAtPath: log) else { throw DDPMError("\(log): cannot open the log file for writing") }
        h.seekToEndOfFile()
        return h
    }
}
