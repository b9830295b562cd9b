// diffusers UNet2DModel import and export against the reference tensors of
// scripts/diffusers-unet-fixtures.py (Fixtures/diffusers-unet: diffusers 0.42.1, torch 2.15 CPU).
import Foundation
import XCTest
@testable import Shared

let diffusersFixtures = fixtures.appendingPathComponent("diffusers-unet")

final class DiffusersTests: XCTestCase {
    static let models = ["cifar-small", "church-small", "bench-unet-28-quarter", "cond", "learned-range", "scale-shift"]

    func fixture(_ name: String) -> String { diffusersFixtures.appendingPathComponent(name).path }

    /// max |a - b| / max |b|: the error relative to the activation's scale.
    func relError(_ a: [Float], _ b: [Float]) -> Double {
        precondition(a.count == b.count)
        var d = 0.0, s = 0.0
        for (x, y) in zip(a, b) { d = max(d, Double(abs(x - y))); s = max(s, Double(abs(y))) }
        return d / max(s, 1e-30)
    }

    /// Tolerance 2e-5 of the activation's scale. Both sides compute in float32 (eps 6e-8) through
    /// about 30 layers whose sums have up to 9 x 64 terms; diffusers takes the sinusoid's
    /// arguments t f_i in float32 (an absolute error up to ulp(999)/2 = 3e-5 in the phase at
    /// t = 999) where we use double, which alone moves the time embedding by about 1e-5 of its
    /// scale. The measured errors (printed) are 1e-6 ... 5e-6; a wrong option (eps 1e-5 for
    /// 1e-6, one head for eight, the sinusoid halves swapped, padding) moves them by 1e-3 or more.
    static let tolerance = 2e-5

    func testForwardMatchesDiffusersLayerByLayer() throws {
        for name in Self.models {
            let dir = fixture(name)
            let model = try ModelFile.load(path: dir)
            let ref = try Frame.load(path: dir + "/reference.safetensors")
            let net = try XCTUnwrap(model.network as? UNet)
            let x = try ref.require("x").floats
            let t = try ref.require("t").doubles.map { Int($0) }
            let y = ref["y"].map { $0.doubles.map { Int($0) } }
            var acts: [String: [Float]] = [:]
            net.tap = { acts[$0] = Array($1) }
            let out = net.forward(x, t: t, y: y, training: false)
            net.tap = nil
            // the time embedding first (diffusers' act.time_embedding: before the class row is added)
            let temb = Array(UnsafeBufferPointer(start: net.timeEmbedding.forward(t), count: t.count * net.unetConfig.tembDim))
            var errors = [("time_embedding", relError(temb, try ref.require("act.time_embedding").floats))]
            let L = net.unetConfig.mults.count
            let blocks = ["conv_in"] + (0..<L).map { "down_blocks.\($0)" } + ["mid_block"] + (0..<L).map { "up_blocks.\($0)" }
            for b in blocks {
                let a = try XCTUnwrap(acts[b], "\(name): no activation tapped at \(b)")
                errors.append((b, relError(a, try ref.require("act." + b).floats)))
            }
            errors.append(("sample", relError(out, try ref.require("sample").floats)))
            if let first = errors.first(where: { !($0.1 <= Self.tolerance) }) {
                XCTFail("\(name): first differing block \(first.0): relative error \(first.1) > \(Self.tolerance)")
            }
            let worst = errors.map(\.1).max()!
            print("diffusers \(name): \(net.parameters.reduce(0) { $0 + $1.count }) parameters, output relative error \(errors.last!.1), worst block \(worst)")
        }
    }

    func testLegacyAttentionNamesLoad() throws {
        let dir = fixture("cifar-small")
        let modern = try Frame.load(path: dir + "/" + DiffusersUNet.weightsFile)
        var legacy = Frame(metadata: modern.metadata)
        let renames = [(".to_q.", ".query."), (".to_k.", ".key."), (".to_v.", ".value."), (".to_out.0.", ".proj_attn.")]
        var renamed = 0
        for (name, t) in modern.tensors {
            var n = name
            for (new, old) in renames where n.contains(".attentions.") && n.contains(new) { n = n.replacingOccurrences(of: new, with: old); renamed += 1 }
            legacy[n] = t
        }
        XCTAssertEqual(renamed, 6 * 8)   // 6 attentions (2 down, 1 mid, 3 up) x 4 projections x (weight, bias)
        let model = try ModelFile.load(path: dir)
        let other = try NetworkConfig.unet(try DiffusersUNet.config(from: try DiffusersJSON.read(dir + "/config.json"))).make()
        try DiffusersUNet.readWeights(legacy, store: other.store, into: other.store.values)
        XCTAssertEqual(Array(other.store.values), Array(model.network.store.values))
    }

    func testBadConfigValuesAreOneLineErrors() throws {
        let base = try DiffusersJSON.read(fixture("cifar-small") + "/config.json")
        guard case .object(let pairs) = base else { return XCTFail("config.json is not an object") }
        func with(_ key: String, _ v: JSONValue?) -> JSONValue {
            var p = pairs.filter { $0.0 != key }
            if let v { p.append((key, v)) }
            return .object(p)
        }
        let s = { (x: String) in JSONValue.string(x) }
        let cases: [(JSONValue, String)] = [
            (with("resnet_time_scale_shift", s("spatial")), "resnet_time_scale_shift = \"spatial\""),
            (with("time_embedding_type", s("fourier")), "time_embedding_type = \"fourier\""),
            (with("upsample_type", s("resnet")), "upsample_type = \"resnet\""),
            (with("downsample_type", s("resnet")), "downsample_type = \"resnet\""),
            (with("class_embed_type", s("timestep")), "class_embed_type = \"timestep\""),
            (with("act_fn", s("gelu")), "act_fn = \"gelu\""),
            (with("mid_block_type", .null), "mid_block_type = null"),
            (with("downsample_padding", DiffusersJSON.int(2)), "downsample_padding = 2"),
            (with("out_channels", DiffusersJSON.int(5)), "out_channels = 5"),
            (with("time_embedding_dim", DiffusersJSON.int(64)), "time_embedding_dim = 64"),
            (with("attn_norm_num_groups", DiffusersJSON.int(2)), "attn_norm_num_groups = 2"),
            (with("norm_num_groups", DiffusersJSON.int(3)), "not divisible into 3 normalisation groups"),
            (with("block_out_channels", .array([8, 12, 16, 16].map(DiffusersJSON.int))), "block_out_channels = [8, 12, 16, 16]"),
            (with("attention_head_dim", DiffusersJSON.int(3)), "attention_head_dim = 3 does not divide 16"),
            (with("sample_size", .null), "unsupported sample_size = null"),
            (with("sample_size", nil), "missing sample_size"),
            (with("sample_size", DiffusersJSON.int(12)), "not divisible by 8"),
            (with("frobnicate", .bool(true)), "unsupported key frobnicate = true"),
            (with("_class_name", s("UNet2DConditionModel")), "_class_name = \"UNet2DConditionModel\""),
            (with("down_block_types", .array(["DownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D", "DownBlock2D"].map(s))),
             "unsupported down block type CrossAttnDownBlock2D"),
            (with("up_block_types", .array(["UpBlock2D", "AttnUpBlock2D", "UpBlock2D", "UpBlock2D"].map(s))), "does not mirror"),
        ]
        for (json, expected) in cases {
            XCTAssertThrowsError(try DiffusersUNet.config(from: json)) { e in
                let m = (e as? DDPMError)?.message ?? "\(e)"
                XCTAssertTrue(m.contains(expected), "expected '\(expected)' in: \(m)")
                XCTAssertFalse(m.contains("\n"), m)
            }
        }
        // weights that do not fit the config, through the directory loader
        let dir = temporaryDirectory().appendingPathComponent("m").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: fixture("cond") + "/config.json", toPath: dir + "/config.json")
        var w = try Frame.load(path: fixture("cond") + "/" + DiffusersUNet.weightsFile)
        w["extra.weight"] = Tensor([Float](repeating: 0, count: 2), shape: [2])
        try w.save(path: dir + "/" + DiffusersUNet.weightsFile)
        XCTAssertThrowsError(try ModelFile.load(path: dir)) { XCTAssertTrue("\($0)".contains("unexpected tensor 'extra.weight'"), "\($0)") }
        try FileManager.default.copyItem(atPath: fixture("cifar-small") + "/config.json", toPath: dir + "/c.json")
        try FileManager.default.removeItem(atPath: dir + "/config.json")
        try FileManager.default.moveItem(atPath: dir + "/c.json", toPath: dir + "/config.json")
        XCTAssertThrowsError(try ModelFile.load(path: dir)) { XCTAssertTrue("\($0)".contains("no tensor") || "\($0)".contains("shape"), "\($0)") }
        let empty = temporaryDirectory().path
        XCTAssertThrowsError(try ModelFile.load(path: empty)) { XCTAssertTrue("\($0)".contains("neither a diffusers pipeline"), "\($0)") }
    }

    func testSchedulerConfigMaps() throws {
        let model = try ModelFile.load(path: fixture("cifar-small-pipeline"))
        XCTAssertEqual(model.schedule.beta, try Schedule.make(.linear).beta)
        XCTAssertEqual(model.metadata["prediction"], "eps")
        XCTAssertEqual(model.metadata["timestep_spacing"], "leading")
        XCTAssertEqual(model.metadata["steps_offset"], "1")
        XCTAssertEqual(model.metadata["set_alpha_to_one"], "true")
        XCTAssertEqual(model.metadata["clip_sample"], "true")
        func sched(_ pairs: [(String, JSONValue)]) throws -> (Schedule, [String: String]) {
            try DiffusersDirectory.schedule(from: .object([("_class_name", .string("DDPMScheduler"))] + pairs))
        }
        let f = DiffusersJSON.float
        XCTAssertEqual(try sched([("beta_schedule", .string("squaredcos_cap_v2"))]).0.beta, try Schedule.make(.cosine).beta)
        XCTAssertEqual(try sched([("beta_schedule", .string("scaled_linear")), ("beta_start", f(0.00085)), ("beta_end", f(0.012))]).0.beta,
                       try Schedule.make(.scaledLinear).beta)
        XCTAssertEqual(try sched([("beta_schedule", .string("sigmoid"))]).0.beta, try Schedule.make(.sigmoid).beta)
        let z = try sched([("rescale_betas_zero_snr", .bool(true)), ("prediction_type", .string("v_prediction"))])
        XCTAssertEqual(z.0.beta, try Schedule.make(.linear, zeroTerminalSNR: true).beta)
        XCTAssertEqual(z.1["prediction"], "v")
        XCTAssertEqual(try sched([("prediction_type", .string("sample"))]).1["prediction"], "x0")
        let tb = try sched([("num_train_timesteps", DiffusersJSON.int(3)), ("trained_betas", .array([0.1, 0.2, 0.3].map(f)))]).0
        XCTAssertEqual(tb.beta, [0.1, 0.2, 0.3])
        XCTAssertEqual(tb.kind, .custom)
        for (pairs, expected) in [([("thresholding", JSONValue.bool(true))], "thresholding = true"),
                                  ([("beta_schedule", .string("exponential"))], "beta_schedule = \"exponential\""),
                                  ([("prediction_type", .string("flow"))], "prediction_type = \"flow\""),
                                  ([("trained_betas", .array([f(0.1)]))], "trained_betas must be null or a list of"),
                                  ([("karras", .bool(true))], "unsupported key karras")] {
            XCTAssertThrowsError(try sched(pairs)) { XCTAssertTrue("\($0)".contains(expected), "expected '\(expected)' in \($0)") }
        }
    }

    /// Config files compared as key -> value (numbers by value), safetensors tensor by tensor, bit for bit.
    func assertSameDirectory(_ a: String, _ b: String, file: StaticString = #filePath, line: UInt = #line) throws {
        for json in ["config.json", "model_index.json", "scheduler/scheduler_config.json", "unet/config.json"]
        where FileManager.default.fileExists(atPath: a + "/" + json) {
            guard case .object(let p) = try DiffusersJSON.read(a + "/" + json), case .object(let q) = try DiffusersJSON.read(b + "/" + json) else {
                return XCTFail("\(json) is not an object", file: file, line: line)
            }
            let da = Dictionary(p, uniquingKeysWith: { $1 }), db = Dictionary(q, uniquingKeysWith: { $1 })
            let only = Set(da.keys).symmetricDifference(db.keys).sorted()
            XCTAssertTrue(only.isEmpty, "\(a): \(json): keys in only one of the two: \(only)", file: file, line: line)
            for (k, v) in da where db[k] != v { XCTFail("\(a): \(json) \(k): \(v) vs \(String(describing: db[k]))", file: file, line: line) }
        }
        for w in [DiffusersUNet.weightsFile, "unet/" + DiffusersUNet.weightsFile] where FileManager.default.fileExists(atPath: a + "/" + w) {
            let fa = try Frame.load(path: a + "/" + w), fb = try Frame.load(path: b + "/" + w)
            let only = Set(fa.names).symmetricDifference(fb.names).sorted()
            XCTAssertTrue(only.isEmpty, "\(a): tensors in only one of the two: \(only)", file: file, line: line)
            for (n, t) in fa.tensors {
                guard let u = fb[n] else { continue }
                XCTAssertEqual(t.shape, u.shape, "\(n)", file: file, line: line)
                XCTAssertEqual(t.floats.map(\.bitPattern), u.floats.map(\.bitPattern), "\(a): tensor \(n) differs", file: file, line: line)
            }
        }
    }

    func testImportExportReproducesFixtures() throws {
        let tmp = temporaryDirectory()
        for name in Self.models + ["cifar-small-pipeline"] {
            let model = try ModelFile.load(path: fixture(name))
            let out = tmp.appendingPathComponent(name).path
            try DiffusersDirectory.write(model, to: out, pipeline: name.hasSuffix("-pipeline"))
            try assertSameDirectory(fixture(name), out)
            XCTAssertFalse(FileManager.default.fileExists(atPath: out + ".tmp.\(getpid())"))
            // the model file route: from-diffusers then to-diffusers (raw weights)
            let file = tmp.appendingPathComponent(name + ".st").path
            try model.frame.save(path: file)
            try DiffusersDirectory.write(try ModelFile.load(path: file, weights: .raw), weights: .raw, to: out + "-2",
                                         pipeline: name.hasSuffix("-pipeline"))
            try assertSameDirectory(fixture(name), out + "-2")
        }
        // an existing target is refused
        let model = try ModelFile.load(path: fixture("cond"))
        XCTAssertThrowsError(try DiffusersDirectory.write(model, to: tmp.path)) { XCTAssertTrue("\($0)".contains("exists"), "\($0)") }
    }

    func testTrainedModelExportsAndReimportsIdentically() throws {
        // a model written by train (Fixtures/unet8.st): export, import, the same network output bit for bit
        let original = try ModelFile.load(path: fixtures.appendingPathComponent("unet8.st").path)
        let out = temporaryDirectory().appendingPathComponent("exported").path
        try DiffusersDirectory.write(original, to: out)
        let back = try ModelFile.load(path: out)
        XCTAssertEqual(back.schedule.beta, original.schedule.beta)
        let shape = original.network.inputShape
        var rng = RandomStream(seed: 3, purpose: .noise, index: 0)
        let x = (0..<(2 * shape.reduce(1, *))).map { _ in rng.nextNormal() }
        let y: [Int]? = original.classes > 0 ? [0, original.classes] : nil
        let a = original.network.forward(x, t: [999, 10], y: y, training: false)
        let b = back.network.forward(x, t: [999, 10], y: y, training: false)
        XCTAssertEqual(a.map(\.bitPattern), b.map(\.bitPattern))
        guard case .unet(var c0) = original.config, case .unet(let c1) = back.config else { return XCTFail("not a U-Net") }
        // what diffusers cannot say the same way: the seed; attention resolutions that are no level's;
        // a fixed head count (diffusers fixes the head width); the null class (a class row there)
        let levels = (0..<c0.mults.count).filter { c0.attnResolutions.contains(c0.levelSizes[$0]) || $0 == c0.mults.count - 1 }
        for c in levels.map({ c0.mults[$0] * c0.channels }) { XCTAssertEqual(c0.headsFor(c), c1.headsFor(c), "heads over \(c) channels") }
        XCTAssertEqual(c1.classes, c0.classes + 1)
        c0.seed = 0
        c0.attnResolutions = c0.attnResolutions.filter { c0.levelSizes.contains($0) }
        (c0.heads, c0.headDim, c0.classes) = (c1.heads, c1.headDim, c1.classes)
        XCTAssertEqual(c0, c1)
    }

    /// DDIM, 50 steps, eta 0, from diffusers' x_T: `denoise --model DIR --from 999 --sampler ddim
    /// --steps 50` (leading spacing: t = 0, 20, ..., 980, the last step to abar = 1) against
    /// DDIMScheduler's loop (steps_offset 0, set_alpha_to_one, no clipping). Tolerance 1e-4 of the
    /// sample's scale: 50 forwards, each within about 1e-6 (above), plus diffusers' float32
    /// alphas_cumprod (relative 1e-6) against our double schedule, compounded by the chain's
    /// amplification of about 1 per step (measured: printed).
    func testDDIM50MatchesDiffusers() throws {
        let dir = fixture("cifar-small")
        let ref = try Frame.load(path: dir + "/ddim50.safetensors")
        XCTAssertEqual(try ref.require("timesteps").doubles.map { Int($0) }, Array(stride(from: 980, through: 0, by: -20)))
        var input = Frame(metadata: ["kind": "batch"])
        input["x"] = try ref.require("x_T")
        let r = try runTool("denoise", ["--model", dir, "--from", "999", "--sampler", "ddim", "--steps", "50", "--quiet"],
                            stdin: try encode([input]))
        XCTAssertEqual(r.status, 0, r.stderr)
        let out = try decode(r.stdout)
        let x = try XCTUnwrap(out.first?.require("x").floats)
        let e = relError(x, try ref.require("x_0").floats)
        print("diffusers DDIM-50 (cifar-small, 4 samples): relative error \(e)")
        XCTAssertLessThan(e, 1e-4)
    }

    /// The pipeline's own scheduler config as the sampler's defaults: `denoise --model PIPELINE
    /// --sampler ddim --steps 5` takes steps_offset 1 (t = 801, ..., 1), clip_sample and DDIMScheduler's
    /// eps convention (x_0 clipped, the model's eps kept) from scheduler_config.json, and matches
    /// DDIMScheduler.from_pretrained's loop. Five steps, tolerance 1e-4: with the random network's
    /// eps kept the chain amplifies a relative input change of 1e-6 to 2e-5 after 5 steps (to 0.1
    /// after 50; measured in float64, scripts/diffusers-unet-fixtures.py), and each of our forwards
    /// is within about 1e-6 of diffusers'. Its x_0 reaches |x| ~ 500 unclipped, so clipping acts at
    /// every step: re-deriving eps from the clipped x_0 (an explicit --clip) or not offsetting the
    /// steps (--steps-offset 0) must each land far from the reference.
    func testDDIMWithThePipelinesSchedulerConfigMatchesDiffusers() throws {
        let ref = try Frame.load(path: fixture("cifar-small") + "/ddim5-pipeline.safetensors")
        XCTAssertEqual(try ref.require("timesteps").doubles.map { Int($0) }, [801, 601, 401, 201, 1])
        var input = Frame(metadata: ["kind": "batch"])
        input["x"] = try ref.require("x_T")
        let want = try ref.require("x_0").floats
        func run(_ extra: [String]) throws -> (x: [Float], meta: [String: String]) {
            let r = try runTool("denoise", ["--model", fixture("cifar-small-pipeline"), "--from", "999", "--sampler", "ddim",
                                            "--steps", "5", "--quiet"] + extra, stdin: try encode([input]))
            XCTAssertEqual(r.status, 0, r.stderr)
            let out = try XCTUnwrap(try decode(r.stdout).first)
            return (try out.require("x").floats, out.metadata)
        }
        let (x, meta) = try run([])
        XCTAssertEqual(meta["steps_offset"], "1"); XCTAssertEqual(meta["clip"], "true"); XCTAssertEqual(meta["clip_model_eps"], "true")
        XCTAssertEqual(meta["start_t"], "801")
        let e = relError(x, want)
        print("diffusers pipeline DDIM-5 (steps_offset 1, clip_sample): relative error \(e)")
        XCTAssertLessThan(e, 1e-4)
        // The same with every default spelled out.
        XCTAssertLessThan(relError(try run(["--steps-offset", "1", "--clip", "--clip-model-eps", "--spacing", "leading"]).x, want), 1e-4)
        XCTAssertGreaterThan(relError(try run(["--clip"]).x, want), 1e-2, "re-deriving eps should differ")
        XCTAssertGreaterThan(relError(try run(["--steps-offset", "0"]).x, want), 1e-2, "the offset should matter")
    }

    /// README's "Use a diffusers model" block, run as written on a copy of the pipeline fixture.
    func testReadmeBlockRunsAsWritten() throws {
        let script = try documentedBlock("README.md", after: "<!-- tested-diffusers -->", language: "sh")
        let dir = temporaryDirectory()
        try FileManager.default.copyItem(atPath: fixture("cifar-small-pipeline"), toPath: dir.appendingPathComponent("ddpm-cifar10-32").path)
        let r = try runBash(["-c", "set -eu -o pipefail\n" + script], in: dir)
        XCTAssertEqual(r.status, 0, r.stderr)
        let samples = try Frame.loadAll(path: dir.appendingPathComponent("samples.st").path)
        XCTAssertEqual(samples.reduce(0) { $0 + ((try? $1.require("x").shape.first) ?? 0) }, 16)
        try assertSameDirectory(fixture("cifar-small-pipeline"), dir.appendingPathComponent("exported").path)
    }

    /// The diffusers options have a backward too (so an imported network trains): finite
    /// differences on a small U-Net with all of them on, the wiring check of NNUNetTests
    /// (same tolerances and their reasons, NNGradCheck.swift) through scale_shift's modulated
    /// GroupNorm, the mid block's output scale, the mid attention without GroupNorm, the
    /// asymmetrically padded downsampler and the input centring.
    func testDiffusersOptionsGradients() throws {
        var c = UNetConfig(inShape: [1, 8, 8], channels: 8, mults: [1, 2], resBlocks: 1, attnResolutions: [4],
                           heads: 2, groups: 2, dropout: 0, classes: 3, learnSigma: true, seed: 5)
        c.normEps = 1e-6; c.flipSinToCos = false; c.freqShift = 1; c.downsamplePadding = 0; c.scaleShift = true
        c.midScale = 1.4142135623730951; c.midAttentionNorm = false; c.centerInput = true
        let net = try UNet(config: c)
        // the options change the function (against the same weights without them)
        let plain = try UNet(config: UNetConfig(inShape: [1, 8, 8], channels: 8, mults: [1, 2], resBlocks: 1,
                                                attnResolutions: [4], heads: 2, groups: 2, dropout: 0, classes: 3,
                                                learnSigma: true, seed: 5))
        XCTAssertNotEqual(net.parameters.count, plain.parameters.count)   // no mid GroupNorm; the same names otherwise
        randomizeParameters(net.parameters, seed: 21, scale: 0.3)
        let t = [3, 900], y = [1, 3]
        gradCheck("diffusers-options UNet", input: testNormals(2 * 64, seed: 22), params: net.parameters,
                  forward: { net.forward($0, t: t, y: y, training: true) },
                  backward: { net.backward($0) }, coords: 6, abs: 2e-3, minGradient: 1e-4)
    }
}
