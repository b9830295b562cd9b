// train: fits an eps-prediction network to a data stream and writes a model file.
import ArgumentParser
import Foundation
import Shared

@main
struct TrainTool: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Train a DDPM noise-prediction network (U-Net or MLP) on a data stream.",
        discussion: """
        Reads frames with 'x' (F32 [N,C,H,W] images in [-1,1] or [N,D] vectors) and optionally \
        'y' (integer class labels [N]) from stdin or --data, all held in memory. A schedule frame \
        first on the stream (or --schedule FILE) sets the noise schedule; default linear T=1000.
        Writes ONE model frame (kind 'model': ema.<param> and raw.<param> F32, schedule.beta F64, \
        metadata arch.*, loss, classes, data_shape, steps, seed; docs/FORMAT.md) to -o FILE or stdout.
        Checkpoints (--checkpoint FILE --every K) add the AdamW moments and the step (kind \
        'checkpoint'); --resume FILE continues a run bit-identically: the network, schedule and \
        training settings come from the checkpoint, --steps is the TOTAL number of steps.
        Defaults: images -> --arch unet, vectors -> --arch mlp; --lr 2e-4 (unet) or 1e-3 (mlp).

        Examples:
          tensor toy swissroll -n 10000 | train --steps 5000 -o roll.safetensors
          tensor from-idx train-images.gz train-labels.gz > mnist.st
          train --data mnist.st --steps 20000 --checkpoint ck.st --every 1000 -o mnist.safetensors
          train --data mnist.st --resume ck.st --steps 40000 -o mnist.safetensors
          train --data mnist.st --classifier --steps 5000 -o classifier.safetensors
        """,
        version: toolkitVersion)

    @Option(help: "Read the data from FILE instead of stdin.") var data: String?
    @Option(help: "Network: unet or mlp (default: unet for images, mlp for vectors).") var arch: String?
    // U-Net
    @Option(help: "U-Net base channels (default 32).") var channels: Int?
    @Option(help: "U-Net channel multipliers per level (default 1,2,2).") var mults: String?
    @Option(help: "U-Net residual blocks per level (default 2).") var resBlocks: Int?
    @Option(help: "U-Net attention at these resolutions, comma-separated (default: the lowest, 7 for 28x28; '' for none).") var attn: String?
    @Option(help: "U-Net attention heads (default: channels / 8, i.e. heads of dim 8).") var heads: Int?
    @Option(help: "U-Net GroupNorm groups (default 8).") var groups: Int?
    @Option(help: "U-Net dropout probability (default 0.1).") var dropout: Double?
    // MLP
    @Option(help: "MLP hidden width (default 128).") var width: Int?
    @Option(help: "MLP hidden layers (default 3).") var depth: Int?
    @Option(help: "MLP sinusoidal time-embedding dimension (default 32).") var tembDim: Int?
    // training
    @Option(help: "Total number of optimizer steps (default 1000).") var steps: Int?
    @Option(help: "Examples per step (default 64 for unet, 256 for mlp).") var batch: Int?
    @Option(help: "Peak learning rate of AdamW.") var lr: Double?
    @Option(help: "Linear learning-rate warm-up steps (default 0).") var warmup: Int?
    @Option(help: "Clip the global gradient L2 norm to this (0 = off; default 1).") var clip: Double?
    @Option(help: "EMA decay of the weights (default 0.9999, with (1+n)/(10+n) warm-up).") var ema: Double?
    @Option(help: "AdamW decoupled weight decay (default 0).") var weightDecay: Double?
    @Option(help: "Random seed: weights, data order, t, noise, label dropout (default 0).") var seed: UInt64?
    @Option(help: "Schedule file (a 'schedule' frame); default linear T=1000.") var schedule: String?
    @Option(help: "simple (L_simple) or hybrid (L_simple + lambda L_vlb, learned variance).") var loss: String?
    @Option(help: "lambda of the hybrid loss (default 0.001).") var vlbWeight: Double?
    @Option(help: "Number of classes K (default max(y)+1 when 'y' is present; 0 = unconditional).") var classes: Int?
    @Option(help: "Probability of training with the null class (default 0.1).") var pUncond: Double?
    @Option(name: [.short, .customLong("output")], help: "Write the model to FILE (default stdout).") var output: String?
    @Option(help: "Write a checkpoint to FILE every --every steps and at the end.") var checkpoint: String?
    @Option(help: "Checkpoint period in steps (default 1000).") var every: Int?
    @Option(help: "Continue from a checkpoint FILE.") var resume: String?
    @Option(help: "Append 'step,loss' CSV lines to FILE.") var log: String?
    @Flag(help: "Train the noise-aware classifier p(y | x_t, t) for classifier guidance instead (needs 'y'; cross-entropy on x_t, t uniform; kind 'classifier'). Images: the U-Net down path (--channels, --mults, --res-blocks (1), --groups) + pooling + linear head; vectors or --arch mlp: an MLP over the flattened sample (--width 256, --depth 2).") var classifier = false
    @Flag(help: "No progress on stderr.") var quiet = false

    func run() throws {
        // 1. Everything is checked before any training starts.
        if data == nil && isatty(0) != 0 {
            throw DDPMError("no data: pipe a stream of frames with 'x' into train, or give --data FILE")
        }
        if output == nil && isatty(1) != 0 {
            throw DDPMError("refusing to write the model to a terminal: give -o FILE or redirect stdout")
        }
        for (flag, path) in [("-o", output), ("--checkpoint", checkpoint), ("--log", log)] {
            guard let path else { continue }
            let dir = (path as NSString).deletingLastPathComponent
            var isDir: ObjCBool = false
            guard FileManager.default.fileExists(atPath: dir.isEmpty ? "." : dir, isDirectory: &isDir), isDir.boolValue else {
                throw DDPMError("\(flag) \(path): the directory '\(dir)' does not exist")
            }
        }
        let reader = try data.map { try FrameReader(path: $0) } ?? FrameReader()
        if resume != nil {
            let fixed: [(String, Bool)] = [("--arch", arch != nil), ("--channels", channels != nil), ("--mults", mults != nil),
                ("--res-blocks", resBlocks != nil), ("--attn", attn != nil), ("--heads", heads != nil), ("--groups", groups != nil),
                ("--dropout", dropout != nil), ("--width", width != nil), ("--depth", depth != nil), ("--temb-dim", tembDim != nil),
                ("--batch", batch != nil), ("--lr", lr != nil), ("--warmup", warmup != nil), ("--clip", clip != nil),
                ("--ema", ema != nil), ("--weight-decay", weightDecay != nil), ("--seed", seed != nil),
                ("--schedule", schedule != nil), ("--loss", loss != nil), ("--vlb-weight", vlbWeight != nil),
                ("--classes", classes != nil), ("--p-uncond", pUncond != nil), ("--classifier", classifier)]
            if let (flag, _) = fixed.first(where: { $0.1 }) {
                throw DDPMError("\(flag) cannot be combined with --resume (the checkpoint fixes it)")
            }
        }
        let sched: Schedule = resume == nil ? try resolveSchedule(path: schedule, reader: reader) : Schedule.standard()
        let frames: [Frame]
        do { frames = try reader.readAll() } catch let e as DDPMError { throw DDPMError("data: \(e.message)") }
        let dataset = try TrainingData(frames: frames)
        let totalSteps = steps ?? 1000
        guard totalSteps >= 0 else { throw DDPMError("--steps must be >= 0, got \(totalSteps)") }
        if let every, every <= 0 { throw DDPMError("--every must be positive, got \(every)") }
        if every != nil && checkpoint == nil { throw DDPMError("--every needs --checkpoint FILE") }

        let trainer: Trainer
        if let resume {
            let frame: Frame, loaded: LoadedModel, config: TrainConfig
            do {
                frame = try Frame.load(path: resume)
                loaded = try ModelFile.load(frame: frame, weights: .raw)
                config = try TrainConfig(metadata: frame.metadata)
            } catch let e as DDPMError { throw DDPMError("--resume: \(e.message)") }
            let shape = loaded.dataShape, count = Int(frame.metadata["data_count"] ?? "")
            guard shape == dataset.sampleShape, count == dataset.count else {
                throw DDPMError("--resume \(resume): the checkpoint was trained on \(count ?? 0) samples of shape \(shape), the data has \(dataset.count) of shape \(dataset.sampleShape)")
            }
            trainer = try Trainer(network: loaded.network, schedule: loaded.schedule, data: dataset, config: config)
            try trainer.restore(checkpoint: frame)
            guard trainer.step <= totalSteps else {
                throw DDPMError("--steps \(totalSteps) is fewer than the checkpoint's \(trainer.step) steps (--steps is the total)")
            }
        } else {
            var config = TrainConfig()
            let isImage = dataset.sampleShape.count == 3
            if classifier {
                if loss == "hybrid" { throw DDPMError("--loss hybrid does not apply to --classifier (cross-entropy)") }
                config.objective = .classifier
            }
            let baseArch = arch ?? (isImage ? "unet" : "mlp")
            let archName = classifier ? "classifier-" + baseArch : baseArch
            guard baseArch == "unet" || baseArch == "mlp" else { throw DDPMError("--arch must be unet or mlp, got '\(archName)'") }
            guard let lossKind = LossKind(rawValue: loss ?? "simple") else {
                throw DDPMError("--loss must be simple or hybrid, got '\(loss!)'")
            }
            config.loss = classifier ? .simple : lossKind
            config.vlbWeight = vlbWeight ?? 0.001
            guard config.vlbWeight >= 0 else { throw DDPMError("--vlb-weight must be >= 0") }
            if let classes {
                guard classes >= 0 else { throw DDPMError("--classes must be >= 0, got \(classes)") }
                config.classes = classes
            } else {
                config.classes = (dataset.y?.max()).map { $0 + 1 } ?? 0
            }
            config.pUncond = pUncond ?? 0.1
            config.seed = seed ?? 0
            config.batch = batch ?? (archName == "unet" ? 64 : (classifier && isImage ? 128 : 256))
            config.optimizer.lr = lr ?? (archName == "unet" ? 2e-4 : 1e-3)
            config.optimizer.warmup = warmup ?? 0
            config.optimizer.clip = clip ?? 1
            config.optimizer.weightDecay = weightDecay ?? 0
            config.emaDecay = ema ?? 0.9999
            guard config.optimizer.lr > 0, config.optimizer.warmup >= 0, config.optimizer.clip >= 0,
                  config.optimizer.weightDecay >= 0 else {
                throw DDPMError("--lr must be > 0; --warmup, --clip and --weight-decay must be >= 0")
            }
            guard config.emaDecay >= 0 && config.emaDecay < 1 else { throw DDPMError("--ema must lie in [0, 1), got \(config.emaDecay)") }
            var a: [String: String] = ["arch": archName, "classes": String(config.classes),
                                       "learn_sigma": String(lossKind == .hybrid), "seed": String(config.seed)]
            if classifier {
                guard dataset.y != nil, config.classes >= 2 else {
                    throw DDPMError("--classifier needs labels 'y' with at least 2 classes")
                }
                a["learn_sigma"] = nil
                a["in_shape"] = dataset.sampleShape.map(String.init).joined(separator: ",")
                if baseArch == "mlp" {
                    a["width"] = String(width ?? 256)
                    a["depth"] = String(depth ?? 2)
                    a["temb_dim"] = String(tembDim ?? 32)
                } else {
                    guard isImage else { throw DDPMError("--arch unet needs image data [N, C, H, W]; the data has samples of shape \(dataset.sampleShape)") }
                    a["channels"] = String(channels ?? 32)
                    a["mults"] = mults ?? "1,2,2"
                    a["res_blocks"] = String(resBlocks ?? 1)
                    a["groups"] = String(groups ?? 8)
                }
            } else if archName == "mlp" {
                guard dataset.sampleShape.count == 1 else {
                    throw DDPMError("--arch mlp needs vector data [N, D]; the data has samples of shape \(dataset.sampleShape)")
                }
                a["dim"] = String(dataset.sampleShape[0])
                a["width"] = String(width ?? 128)
                a["depth"] = String(depth ?? 3)
                a["temb_dim"] = String(tembDim ?? 32)
            } else {
                guard isImage else {
                    throw DDPMError("--arch unet needs image data [N, C, H, W]; the data has samples of shape \(dataset.sampleShape)")
                }
                a["in_shape"] = dataset.sampleShape.map(String.init).joined(separator: ",")
                let m = mults ?? "1,2,2"
                a["channels"] = String(channels ?? 32)
                a["mults"] = m
                a["res_blocks"] = String(resBlocks ?? 2)
                // Default: attention at the lowest resolution of the down path (7 for 28x28 with 3 levels).
                let levels = max(1, m.split(separator: ",").count)
                a["attn"] = attn ?? String(dataset.sampleShape[1] >> (levels - 1))
                if let heads { a["heads"] = String(heads) }   // else heads of dim 8
                a["groups"] = String(groups ?? 8)
                a["dropout"] = "\(dropout ?? 0.1)"
            }
            let network = try makeAnyNetwork(architecture: a)
            trainer = try Trainer(network: network, schedule: sched, data: dataset, config: config)
        }

        // 2. Training.
        var logHandle: FileHandle? = nil
        if let log {
            if !FileManager.default.fileExists(atPath: log) || resume == nil {
                guard FileManager.default.createFile(atPath: log, contents: Data("step,loss\n".utf8)) else {
                    throw DDPMError("--log \(log): cannot create the file")
                }
            }
            guard let h = FileHandle(forWritingAtPath: log) else { throw DDPMError("--log \(log): cannot open for writing") }
            h.seekToEndOfFile()
            logHandle = h
        }
        var logBuffer = ""
        func flushLog() {
            if let logHandle, !logBuffer.isEmpty { logHandle.write(Data(logBuffer.utf8)); logBuffer = "" }
        }
        let first = trainer.step
        let progress = Progress(label: "train", total: totalSteps - first, quiet: quiet)
        let start = Date()
        var recent = 0.0, recentCount = 0
        // The newest checkpoint on disk: the resumed one until this run writes its own.
        var lastCheckpoint: (step: Int, path: String)? = resume.map { (first, $0) }
        let period = every ?? 1000
        while trainer.step < totalSteps {
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
            if let checkpoint, k % period == 0 || k == totalSteps {
                try trainer.frame(checkpoint: true).save(path: checkpoint)
                lastCheckpoint = (k, checkpoint)
            }
            let elapsed = Date().timeIntervalSince(start)
            let exPerSec = elapsed > 0 ? Double((k - first) * trainer.config.batch) / elapsed : 0
            if k == totalSteps || recentCount >= 50 {
                let acc = value.accuracy.isNaN ? "" : String(format: ", batch accuracy %.3f", value.accuracy)
                progress.update(k - first, extra: String(format: "loss %.4g, %.0f ex/s", recent / Double(recentCount), exPerSec) + acc, unit: "step")
                recent = 0; recentCount = 0
            }
        }
        flushLog()
        if let checkpoint, lastCheckpoint?.step != trainer.step || lastCheckpoint?.path != checkpoint {
            try trainer.frame(checkpoint: true).save(path: checkpoint)
        }
        let model = trainer.frame(checkpoint: false)
        if let output { try model.save(path: output) } else { try FrameWriter().write(model) }
    }

    static func main() { runTool() }
}
