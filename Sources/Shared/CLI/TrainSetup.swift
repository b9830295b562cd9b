// From `train`'s two option groups to a TrainJob: the data read (Batch, frame by frame), the
// schedule resolved, and the typed configs built for the data -- or, with --resume, taken from
// the checkpoint, where a flag may repeat a value but not change it.
import ArgumentParser
import Foundation

public struct TrainSetup {
    public var network: NetworkOptions
    public var training: TrainingOptions

    public init(network: NetworkOptions, training: TrainingOptions) {
        self.network = network
        self.training = training
    }

    /// Both groups from one command line (the flags as `train` takes them, without its own).
    public init(arguments: [String]) throws {
        let flags = try TrainFlags.parse(arguments)
        self.init(network: flags.network, training: flags.training)
    }

    /// The two groups' help text, unwrapped.
    public static var help: String { TrainFlags.helpMessage(columns: 100_000) }

    /// The configs of a fresh run on `data`: the defaults for its sample shape (the config types'),
    /// then the flags; each checked, the offending flag named.
    public func configs(for data: TrainingData) throws -> (network: NetworkConfig, training: TrainConfig) {
        let base = TrainConfig()
        let loss = training.loss ?? base.loss
        if training.classes == nil, let top = data.y?.max(), top >= ConfigLimits.classes {
            throw DDPMError("label \(top) in 'y' exceeds the largest class label allowed, \(ConfigLimits.classes - 1) (the class embedding has one row per label)")
        }
        var net: NetworkConfig
        do {
            net = try NetworkConfig.defaults(for: data.sampleShape, kind: network.arch, classifier: training.classifier,
                                             classes: training.classes ?? data.inferredClasses,
                                             learnSigma: !training.classifier && loss == .hybrid, seed: training.seed ?? base.seed)
        } catch let e as DDPMError {
            throw DDPMError((network.arch.map { "--arch \($0.rawValue): " } ?? "") + e.message)
        }
        try network.apply(to: &net, fixed: false)
        var config = TrainConfig.defaults(for: net)
        try training.apply(to: &config, fixed: false)
        if training.snrGamma != nil && config.weighting != .minSNR { throw DDPMError("--snr-gamma applies to --weighting min-snr only") }
        try training.check(config)
        try network.check(net)
        return (net, config)
    }

    /// The job `train` runs: a fresh run, or the run of checkpoint `resume` continued; with a
    /// communicator, this rank's part of a data-parallel run.
    public func job(reader: FrameReader, resume: String?, checkpoint: String?, every: Int?, log: String?, quiet: Bool,
                    communicator: Communicator? = nil) throws -> TrainJob {
        let steps = training.steps ?? TrainJob.defaultSteps
        let every = every ?? TrainJob.defaultCheckpointEvery
        guard let resume else {
            let schedule = try resolveSchedule(path: training.schedule, reader: reader)
            let data = try TrainSetup.readData(reader)
            let (net, config) = try configs(for: data)
            return try TrainJob(network: net, config: config, schedule: schedule, data: data, steps: steps,
                                checkpoint: checkpoint, every: every, log: log, quiet: quiet, communicator: communicator)
        }
        let ck: TrainCheckpoint
        do { ck = try TrainCheckpoint(frame: try Frame.load(path: resume)) } catch let e as DDPMError {
            throw DDPMError("--resume \(resume): \(e.message)")
        }
        try checkSchedule(reader: reader, against: ck.schedule)
        let data = try TrainSetup.readData(reader)
        var net = ck.network, config = ck.config
        try network.apply(to: &net, fixed: true)
        try training.apply(to: &config, fixed: true)
        guard steps >= ck.step else {
            throw DDPMError("--steps \(steps) is fewer than the checkpoint's \(ck.step) steps (--steps is the total)")
        }
        let trainer: Trainer
        do { trainer = try ck.trainer(data: data, communicator: communicator) } catch let e as DDPMError { throw DDPMError("--resume \(resume): \(e.message)") }
        return try TrainJob(trainer: trainer, steps: steps, checkpoint: checkpoint, every: every, log: log,
                            resumedFrom: resume, quiet: quiet)
    }

    /// The whole stream in memory, validated.
    static func readData(_ reader: FrameReader) throws -> TrainingData {
        let frames: [Frame]
        do { frames = try reader.readAll() } catch let e as DDPMError { throw DDPMError("data: \(e.message)") }
        return try TrainingData(frames: frames)
    }

    /// With --resume, a schedule given (--schedule, or a schedule frame first on the stream) must
    /// be the checkpoint's.
    func checkSchedule(reader: FrameReader, against fixed: Schedule) throws {
        var given: (Schedule, String)? = nil
        if let path = training.schedule {
            given = (try Schedule.load(path: path), "--schedule \(path)")
        } else if let first = try reader.next() {
            if first.kind == "schedule" { given = (try Schedule(frame: first), "the stream's schedule frame") } else { reader.pushBack(first) }
        }
        guard let (s, source) = given, s.beta != fixed.beta else { return }
        throw DDPMError("\(source): the schedule (\(s.kind.rawValue), T = \(s.T)) differs from the checkpoint's (\(fixed.kind.rawValue), T = \(fixed.T))")
    }
}

struct TrainFlags: ParsableArguments {
    @OptionGroup var network: NetworkOptions
    @OptionGroup var training: TrainingOptions
}

/// Refuses a terminal as the data source or the model's destination (unless `terminals` is false:
/// under mpirun a rank's stdin and stdout are mpirun's), and output paths in directories that do
/// not exist (before any work).
public func checkTrainPaths(data: String?, output: String?, others: [(flag: String, path: String?)], terminals: Bool = true) throws {
    if terminals && data == nil && isatty(0) != 0 {
        throw DDPMError("no data: pipe a stream of frames with 'x' into train, or give --data FILE")
    }
    if terminals && output == nil && isatty(1) != 0 {
        throw DDPMError("refusing to write the model to a terminal: give -o FILE or redirect stdout")
    }
    for (flag, path) in [("-o", output)] + others {
        guard let path else { continue }
        let dir = (path as NSString).deletingLastPathComponent
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: dir.isEmpty ? "." : dir, isDirectory: &isDir), isDir.boolValue else {
            throw DDPMError("\(flag) \(path): the directory '\(dir)' does not exist")
        }
    }
}
