// The typed configs: one set of defaults (library, CLI, model file agree), bounds checked before
// allocation, the arch.* keys and the training keys read back exactly, and model files written by
// older versions (Fixtures/) still loading and giving the same numbers.
import Foundation
import XCTest
@testable import Shared

let fixtures = repositoryRoot.appendingPathComponent("Tests/SharedTests/Fixtures")
func fixture(_ name: String) -> String { fixtures.appendingPathComponent(name).path }

/// nil when the frames hold the same tensors (names, dtypes, shapes, bytes), else the first difference.
/// nil when the frames hold the same tensors: bit for bit (tolerance nil), or float values within
/// `tolerance` * max(1, |reference|) (fixtures made on another machine, whose BLAS kernels round
/// differently: OPENBLAS_CORETYPE and the ISA change the summation order).
func tensorDifference(_ a: [Frame], _ b: [Frame], tolerance: Double? = nil) -> String? {
    guard a.count == b.count else { return "\(a.count) frames vs \(b.count)" }
    for (k, (fa, fb)) in zip(a, b).enumerated() {
        guard fa.names == fb.names else { return "frame \(k + 1): tensors \(fa.names) vs \(fb.names)" }
        for name in fa.names {
            let x = fa[name]!, y = fb[name]!
            guard x.dtype == y.dtype, x.shape == y.shape else { return "frame \(k + 1) '\(name)': \(x.dtype) \(x.shape) vs \(y.dtype) \(y.shape)" }
            let same: Bool
            func close(_ u: [Double], _ v: [Double]) -> Bool {
                guard let tol = tolerance else { return false }
                return zip(u, v).allSatisfy { abs($0 - $1) <= tol * max(1, abs($1)) }
            }
            switch (x.storage, y.storage) {
            case (.f32(let u), .f32(let v)): same = u.map(\.bitPattern) == v.map(\.bitPattern) || close(u.map(Double.init), v.map(Double.init))
            case (.f64(let u), .f64(let v)): same = u.map(\.bitPattern) == v.map(\.bitPattern) || close(u, v)
            case (.i64(let u), .i64(let v)): same = u == v
            case (.i32(let u), .i32(let v)): same = u == v
            case (.u8(let u), .u8(let v)): same = u == v
            default: same = false
            }
            if !same { return "frame \(k + 1) '\(name)': values differ" }
        }
    }
    return nil
}

final class ConfigTests: XCTestCase {
    func data(_ shape: [Int], n: Int = 4, labels: Int? = nil) -> TrainingData {
        TrainingData(x: [Float](repeating: 0.5, count: n * shape.reduce(1, *)), y: labels.map { k in (0..<n).map { $0 % k } },
                     sampleShape: shape)
    }

    /// Parses `train`'s two option groups from `args` (as the tool does) and builds the configs for `data`.
    func cliConfigs(_ args: [String], for data: TrainingData) throws -> (network: NetworkConfig, training: TrainConfig) {
        try TrainSetup(arguments: args).configs(for: data)
    }

    func assertSameNetworks(_ a: Network, _ b: Network, _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(a.config, b.config, what, file: file, line: line)
        XCTAssertEqual(a.parameters.map(\.name), b.parameters.map(\.name), what, file: file, line: line)
        XCTAssertEqual(a.parameters.map(\.shape), b.parameters.map(\.shape), what, file: file, line: line)
        XCTAssertEqual(a.parameters.map { $0.value.map(\.bitPattern) }, b.parameters.map { $0.value.map(\.bitPattern) }, what,
                       file: file, line: line)
    }

    // MARK: one set of defaults

    func testDefaultsAgreeEverywhere() throws {
        // For each kind of data: the library's defaults, `train` with no architecture flags, the
        // network rebuilt from its stored arch.* keys and from its JSON: one config, one set of weights.
        let cases: [(String, TrainingData, [String])] = [
            ("vectors", data([2]), []), ("images", data([1, 28, 28]), []),
            ("conditional images", data([1, 8, 8], labels: 3), []),
            ("image classifier", data([1, 8, 8], labels: 3), ["--classifier"]),
            ("vector classifier", data([3], labels: 4), ["--classifier"]),
            ("MLP classifier of images", data([1, 8, 8], labels: 2), ["--classifier", "--arch", "mlp"]),
        ]
        for (what, d, args) in cases {
            let classifier = args.contains("--classifier")
            let lib = try NetworkConfig.defaults(for: d.sampleShape, kind: args.contains("mlp") ? .mlp : nil, classifier: classifier,
                                                 classes: d.inferredClasses)
            let (cli, training) = try cliConfigs(args, for: d)
            XCTAssertEqual(cli, lib, what)
            XCTAssertEqual(training, TrainConfig.defaults(for: lib), what)
            XCTAssertEqual(training.objective, classifier ? .classifier : .denoiser, what)
            let net = try cli.make()
            XCTAssertEqual(net.parameters.reduce(0) { $0 + $1.count }, cli.parameterCount, what)
            XCTAssertEqual(net.inputShape, cli.inputShape, what)
            XCTAssertEqual(net.outputShape, cli.outputShape, what)
            XCTAssertEqual(net.classes, d.inferredClasses, what)
            assertSameNetworks(net, try NetworkConfig(architecture: net.architecture).make(), what + " (arch keys)")
            let json = try JSONEncoder().encode(cli)
            assertSameNetworks(net, try JSONDecoder().decode(NetworkConfig.self, from: json).make(), what + " (JSON)")
            // A model file's arch keys, as ModelFile writes them.
            let trainer = try Trainer(network: net, schedule: .standard(), data: d, config: training)
            let loaded = try ModelFile.load(frame: trainer.frame(checkpoint: false))
            assertSameNetworks(net, loaded.network, what + " (model file)")
        }
        // The documented defaults (docs, help text): small images get the affordable U-Net.
        let u = UNetConfig.defaults(for: [1, 28, 28])
        XCTAssertEqual([u.channels, u.resBlocks, u.heads, u.headDim, u.groups], [16, 1, 0, 8, 8])
        XCTAssertEqual(u.mults, [1, 2, 2]); XCTAssertEqual(u.attnResolutions, []); XCTAssertEqual(u.dropout, 0.1)
        let m = MLPConfig(dim: 2)
        XCTAssertEqual([m.width, m.depth, m.tembDim], [128, 3, 32])
        let help = TrainSetup.help
        for fragment in ["U-Net base channels (default 16", "(default 1,2,2", "per level (default 1", "default none",
                         "dropout probability (default 0.1)", "MLP hidden width (default 128", "(default 64 for unet"] {
            XCTAssertTrue(help.contains(fragment), fragment)
        }
    }

    func testFlagsOfTheResultsScript() throws {
        // scripts/results-hashes.sh's U-Net: every given flag lands in the config, the rest are defaults.
        let (net, training) = try cliConfigs(["--channels", "8", "--mults", "1,2", "--res-blocks", "1", "--attn", "14", "--dropout", "0"],
                                             for: data([1, 28, 28], n: 20, labels: 10))
        XCTAssertEqual(net, .unet(UNetConfig(inShape: [1, 28, 28], channels: 8, mults: [1, 2], resBlocks: 1, attnResolutions: [14],
                                             dropout: 0, classes: 10)))
        XCTAssertEqual(training.batch, 64); XCTAssertEqual(training.optimizer.lr, 2e-4); XCTAssertEqual(training.classes, 10)
        // --loss hybrid: the learned variance is part of the network's config, and of the training's.
        let (h, ht) = try cliConfigs(["--loss", "hybrid", "--seed", "2", "--arch", "mlp", "--width", "64"], for: data([2]))
        XCTAssertEqual(h, .mlp(MLPConfig(dim: 2, width: 64, learnSigma: true, seed: 2)))
        XCTAssertEqual(ht.loss, .hybrid); XCTAssertEqual(ht.seed, 2); XCTAssertEqual(ht.batch, 256); XCTAssertEqual(ht.optimizer.lr, 1e-3)
        XCTAssertEqual(h.outputShape, [4])
        // --fourier F lands in the MLP's config (and its architecture as arch.fourier).
        let (f, _) = try cliConfigs(["--arch", "mlp", "--fourier", "6"], for: data([2]))
        XCTAssertEqual(f, .mlp(MLPConfig(dim: 2, fourier: 6)))
        XCTAssertEqual(f.architecture["fourier"], "6")
    }

    // MARK: bounds

    func testBoundsNameTheValueBeforeAllocation() throws {
        func issue(_ c: NetworkConfig) -> ConfigIssue? { c.issues.first }
        let img = [1, 28, 28]
        let cases: [(NetworkConfig, String, String)] = [
            (.mlp(MLPConfig(dim: 2, width: 0)), "width", "MLP width 0"),
            (.mlp(MLPConfig(dim: 2, depth: 65)), "depth", "MLP depth 65"),
            (.mlp(MLPConfig(dim: 2, tembDim: 7)), "temb_dim", "time-embedding width 7"),
            (.mlp(MLPConfig(dim: 2, classes: -1)), "classes", "-1 classes"),
            (.mlp(MLPConfig(dim: 2, fourier: 17)), "fourier", "17 Fourier octaves"),
            (.mlp(MLPConfig(dim: 2, width: 65_536, depth: 64)), "parameters", "more than the limit"),
            (.unet(UNetConfig(inShape: img, channels: 7)), "channels", "channels 7"),
            (.unet(UNetConfig(inShape: img, channels: 1 << 20)), "channels", "channels 1048576"),
            (.unet(UNetConfig(inShape: img, mults: [1, 2, 2, 2])), "mults", "image size 28x28 is not divisible by 8"),
            (.unet(UNetConfig(inShape: img, mults: [Int](repeating: 1, count: 9))), "mults", "1 ... 8 levels"),
            (.unet(UNetConfig(inShape: img, mults: [1, 8192])), "mults", "at most 65536 channels"),
            (.unet(UNetConfig(inShape: img, groups: 3)), "groups", "16 channels are not divisible into 3"),
            (.unet(UNetConfig(inShape: img, attnResolutions: [7], heads: 3)), "heads", "attention channels are not divisible into 3 heads"),
            (.unet(UNetConfig(inShape: img, resBlocks: 0)), "res_blocks", "0 residual blocks"),
            (.unet(UNetConfig(inShape: img, dropout: 1)), "dropout", "dropout probability 1.0"),
            (.unet(UNetConfig(inShape: img, dropout: .nan)), "dropout", "dropout probability nan"),
            (.unet(UNetConfig(inShape: [1, 28])), "in_shape", "[1, 28]"),
            (.unet(UNetConfig(inShape: [1, 1 << 13, 1 << 13])), "in_shape", "at most"),
            (.unet(UNetConfig(inShape: img, channels: 4096, mults: [1, 2, 2], resBlocks: 64)),
             "parameters", "more than the limit"),
            (.classifier(ClassifierConfig(inShape: [2], classes: 1, encoder: .mlp(.init()))), "classes", "at least 2"),
            (.classifier(ClassifierConfig(inShape: [2], classes: 3, encoder: .unet(.init()))), "in_shape", "image samples"),
            (.classifier(ClassifierConfig(inShape: [3, 8, 8], classes: 3, encoder: .unet(.init(channels: 12)))), "groups", "12 channels"),
        ]
        for (config, key, message) in cases {
            let start = Date()
            guard let i = issue(config) else { XCTFail("no issue: \(config)"); continue }
            XCTAssertEqual(i.key, key, "\(config)")
            XCTAssertTrue(i.message.contains(message), "'\(message)' not in '\(i.message)'")
            XCTAssertFalse(i.message.contains("--"), i.message)    // the library names values, not flags
            XCTAssertThrowsError(try config.make())
            XCTAssertLessThan(Date().timeIntervalSince(start), 1, "checked before allocating: \(config)")
        }
        // A model file's arch keys go through the same checks.
        XCTAssertThrowsError(try NetworkConfig(architecture: ["arch": "mlp", "dim": "2", "width": "999999"])) { e in
            XCTAssertTrue("\(e)".contains("MLP width 999999"), "\(e)")
        }
        XCTAssertThrowsError(try NetworkConfig(architecture: ["arch": "unet", "in_shape": "1,8,8", "chanels": "8"])) { e in
            XCTAssertTrue("\(e)".contains("unknown key 'chanels'"), "\(e)")
        }
        XCTAssertThrowsError(try NetworkConfig(architecture: ["arch": "classifier-mlp", "in_shape": "2"])) { e in
            XCTAssertTrue("\(e)".contains("missing key 'classes'"), "\(e)")
        }
    }

    func testParameterCountsAreExact() throws {
        // The count computed before allocation equals the built network's, for every layer kind.
        let configs: [NetworkConfig] = [
            NetworkFactory.benchUNet28().config, NetworkFactory.benchUNet28(classes: 10).config, NetworkFactory.benchMLP2D().config,
            .unet(UNetConfig(inShape: [3, 8, 8], channels: 8, mults: [1, 2, 3], resBlocks: 2, attnResolutions: [8, 2], heads: 2,
                             groups: 4, classes: 5, learnSigma: true)),
            .unet(UNetConfig(inShape: [2, 12, 12], channels: 6, mults: [2, 1], resBlocks: 1, groups: 2)),
            .mlp(MLPConfig(dim: 5, width: 7, depth: 1, tembDim: 4, classes: 3, learnSigma: true)),
            .classifier(ClassifierConfig(inShape: [1, 8, 8], classes: 4, encoder: .unet(.init(channels: 8, mults: [1, 2, 2], resBlocks: 2, groups: 4)))),
            .classifier(ClassifierConfig(inShape: [1, 4, 4], classes: 3, encoder: .mlp(.init(width: 9, depth: 3, tembDim: 6)))),
        ]
        for c in configs {
            XCTAssertEqual(try c.make().parameters.reduce(0) { $0 + $1.count }, c.parameterCount, "\(c)")
        }
        XCTAssertEqual(NetworkFactory.benchUNet28().config.parameterCount, 1_623_169)
    }

    func testTrainConfigBoundsAndKeys() throws {
        var c = TrainConfig()
        c.batch = 16; c.optimizer.lr = 3e-4; c.optimizer.warmup = 7; c.optimizer.clip = 0.5; c.emaDecay = 0.99
        c.optimizer.weightDecay = 0.01; c.seed = 9; c.loss = .hybrid; c.vlbWeight = 0.002; c.classes = 4; c.pUncond = 0.2
        c.prediction = .v; c.weighting = .minSNR; c.snrGamma = 3
        XCTAssertEqual(c.issues, [])
        XCTAssertEqual(try TrainConfig(metadata: c.metadata), c)     // the model file's training keys read back
        XCTAssertEqual(try JSONDecoder().decode(TrainConfig.self, from: JSONEncoder().encode(c)), c)
        let bad: [(WritableKeyPath<TrainConfig, Double>, Double, String, String)] = [
            (\.optimizer.lr, 0, "lr", "learning rate 0.0"), (\.optimizer.lr, .infinity, "lr", "learning rate inf"),
            (\.optimizer.clip, -1, "clip", "clipping norm -1.0"), (\.emaDecay, 1, "ema_decay", "EMA decay 1.0"),
            (\.optimizer.weightDecay, .nan, "weight_decay", "weight decay nan"), (\.pUncond, 1.5, "p_uncond", "probability 1.5"),
            (\.vlbWeight, -0.1, "vlb_weight", "hybrid-loss weight -0.1"), (\.optimizer.beta2, 1, "adam_beta2", "beta2 1.0"),
            (\.snrGamma, 0, "snr_gamma", "Min-SNR gamma 0.0"), (\.snrGamma, .infinity, "snr_gamma", "Min-SNR gamma inf"),
        ]
        for (path, value, key, message) in bad {
            var d = c
            d[keyPath: path] = value
            XCTAssertEqual(d.issues.first?.key, key)
            XCTAssertTrue(d.issues.first?.message.contains(message) == true, "\(d.issues)")
            XCTAssertThrowsError(try d.validate())
        }
        var d = c
        d.batch = 0; XCTAssertEqual(d.issues.first?.key, "batch")
        d = c; d.optimizer.warmup = -1; XCTAssertEqual(d.issues.first?.key, "warmup")
        d = c; d.objective = .classifier; XCTAssertEqual(d.issues.first?.key, "prediction")
        d.prediction = .eps; XCTAssertEqual(d.issues.first?.key, "weighting")
        d.weighting = .uniform; XCTAssertEqual(d.issues.first?.key, "loss")
        // Checkpoints before these keys: eps, uniform, 5; a bad value is refused.
        var old = c.metadata
        for k in ["prediction", "weighting", "snr_gamma"] { old[k] = nil }
        let back = try TrainConfig(metadata: old)
        XCTAssertEqual(back.prediction, .eps); XCTAssertEqual(back.weighting, .uniform); XCTAssertEqual(back.snrGamma, 5)
        old["weighting"] = "snr"
        XCTAssertThrowsError(try TrainConfig(metadata: old))
        // A checkpoint's values go through the same bounds.
        var meta = c.metadata
        meta["lr"] = "-1"
        XCTAssertThrowsError(try { let t = try TrainConfig(metadata: meta); try t.validate() }())
    }

    // MARK: files of older versions

    func testModelFilesOfOlderVersionsLoad() throws {
        // Written by the tools of main aa8822e (Fixtures/make.sh): the configs they hold...
        let mlp = try ModelFile.load(path: fixture("mlp.st"))
        XCTAssertEqual(mlp.config, .mlp(MLPConfig(dim: 2, width: 16, depth: 2, seed: 1)))
        let unet = try ModelFile.load(path: fixture("unet8.st"))
        XCTAssertEqual(unet.config, .unet(UNetConfig(inShape: [1, 8, 8], channels: 4, mults: [1, 2], resBlocks: 1, attnResolutions: [4],
                                                     heads: 2, groups: 2, dropout: 0.1, classes: 4, learnSigma: true, seed: 1)))
        XCTAssertEqual(unet.network.classes, 4)
        XCTAssertEqual(unet.loss, .hybrid)
        let clfU = try ModelFile.load(path: fixture("clf8-unet.st"))
        XCTAssertEqual(clfU.config, .classifier(ClassifierConfig(inShape: [1, 8, 8], classes: 4,
                                                                 encoder: .unet(.init(channels: 4, mults: [1, 2], resBlocks: 1, groups: 2)), seed: 2)))
        let clfM = try ModelFile.load(path: fixture("clf8-mlp.st"))
        XCTAssertEqual(clfM.config, .classifier(ClassifierConfig(inShape: [1, 8, 8], classes: 4, encoder: .mlp(.init(width: 16)), seed: 3)))
        let ck = try TrainCheckpoint(frame: try Frame.load(path: fixture("mlp-ck.st")))
        XCTAssertEqual(ck.network, mlp.config)
        XCTAssertEqual(ck.step, 5); XCTAssertEqual(ck.config.batch, 32); XCTAssertEqual(ck.config.seed, 1)
        // Files without the 'prediction' key are eps-prediction.
        XCTAssertEqual(try mlp.predictionType(), .eps); XCTAssertEqual(try unet.predictionType(), .eps)
        XCTAssertEqual(ck.config.prediction, .eps); XCTAssertEqual(ck.config.weighting, .uniform)
        // ... and every file written again from its loaded state has the same metadata and tensors.
        for (name, loaded) in [("mlp.st", mlp), ("unet8.st", unet)] {
            let old = try Frame.load(path: fixture(name))
            XCTAssertEqual(ModelFile.architecture(from: old.metadata), loaded.network.architecture, name)
        }
    }

    func testFilesOfOlderVersionsSampleClassifyAndResume() throws {
        // The same commands as Fixtures/make.sh, with today's tools: the same numbers, to 1e-4
        // relative (bit for bit on the machine that made them; other BLAS kernels round otherwise,
        // and 5-10 sampling or training steps amplify float rounding to ~1e-6 at most).
        let dir = temporaryDirectory()
        func same(_ tool: String, _ args: [String], stdinFile: String? = nil, expected: String) throws {
            let r = try runTool(tool, args, stdinFile: stdinFile)
            XCTAssertEqual(r.status, 0, r.stderr)
            XCTAssertNil(tensorDifference(try decode(r.stdout), try Frame.loadAll(path: fixture(expected)), tolerance: 1e-4), "\(tool) \(args)")
        }
        try same("denoise", ["--model", fixture("mlp.st"), "-n", "16", "--steps", "10", "--seed", "1", "--quiet"], expected: "mlp.samples.st")
        try same("denoise", ["--model", fixture("unet8.st"), "-n", "2", "--label", "1", "--steps", "5", "--seed", "1", "--quiet"],
                 expected: "unet8.samples.st")
        try same("classify", ["--classifier", fixture("clf8-unet.st"), "--quiet"], stdinFile: fixture("img8.st"), expected: "clf8-unet.classified.st")
        try same("classify", ["--classifier", fixture("clf8-mlp.st"), "--quiet"], stdinFile: fixture("img8.st"), expected: "clf8-mlp.classified.st")
        // The old checkpoint resumes: with no flags, and with the original command's flags repeated.
        let out = dir.appendingPathComponent("r.st").path, ck = dir.appendingPathComponent("ck.st").path
        try FileManager.default.copyItem(atPath: fixture("mlp-ck.st"), toPath: ck)
        for extra in [[], ["--arch", "mlp", "--width", "16", "--depth", "2", "--batch", "32", "--seed", "1", "--checkpoint", ck]] {
            let r = try runTool("train", ["--data", fixture("roll500.st"), "--resume", ck, "--steps", "8", "--quiet", "-o", out] + extra)
            XCTAssertEqual(r.status, 0, r.stderr)
            XCTAssertNil(tensorDifference([try Frame.load(path: out)], [try Frame.load(path: fixture("mlp-resumed.st"))], tolerance: 1e-4), "\(extra)")
        }
    }
}
