// diffusers directories: a UNet2DModel directory (config.json + diffusion_pytorch_model.safetensors)
// or a pipeline directory (model_index.json, unet/, scheduler/scheduler_config.json), read as a
// model (every tool's --model) and written from one (tensor to-diffusers). The scheduler config
// maps onto our Schedule (betas as diffusers' DDPMScheduler / DDIMScheduler build them:
// linear, scaled_linear, squaredcos_cap_v2 = Nichol & Dhariwal's cosine with beta <= 0.999,
// sigmoid, trained_betas, rescale_betas_zero_snr = Lin et al. 2024 Alg. 1); its sampling
// settings go into the model's metadata (docs/FORMAT.md, "diffusers directories").
import Foundation

public enum DiffusersDirectory {
    public static let indexFile = "model_index.json"
    public static let schedulerFile = "scheduler_config.json"
    /// Metadata keys holding the original scheduler config and pipeline class (for export).
    public static let schedulerKey = "diffusers.scheduler", pipelineKey = "diffusers.pipeline"

    static func isFile(_ p: String) -> Bool {
        var st = stat()
        return stat(p, &st) == 0 && (st.st_mode & S_IFMT) == S_IFREG
    }

    public static func isDirectory(_ p: String) -> Bool {
        var st = stat()
        return stat(p, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
    }

    /// prediction_type -> our `prediction` metadata value.
    static let predictions = ["epsilon": "eps", "sample": "x0", "v_prediction": "v"]

    /// scheduler_config.json -> (schedule, metadata: prediction, variance_type, clip_sample,
    /// clip_sample_range, timestep_spacing, steps_offset, set_alpha_to_one when present).
    public static func schedule(from json: JSONValue, file: String = schedulerFile) throws -> (Schedule, [String: String]) {
        var r = try DiffusersConfigReader(file: file, json: json)
        let cls = try r.choice("_class_name", ["DDPMScheduler", "DDIMScheduler"], def: "DDPMScheduler")!
        _ = r.take("_diffusers_version"); _ = r.take("_name_or_path")
        let T = try r.int("num_train_timesteps", 1000, range: 1...Schedule.maxT)
        let b0 = try r.double("beta_start", 1e-4), b1 = try r.double("beta_end", 0.02)
        let kind = try r.choice("beta_schedule", ["linear", "scaled_linear", "squaredcos_cap_v2", "sigmoid"], def: "linear")!
        var trained: [Double]? = nil
        switch r.take("trained_betas") {
        case nil, .null?: break
        case .array(let a)? where a.count == T:
            trained = try a.map {
                guard case .number(let d, _, _) = $0, d > 0, d <= 1 else { throw r.error("trained_betas", .array([$0]), "betas in (0, 1]") }
                return d
            }
        case let v?:
            throw DDPMError("\(file): trained_betas must be null or a list of num_train_timesteps = \(T) betas, got \(r.describe(v).prefix(80))")
        }
        let zsnr = try r.bool("rescale_betas_zero_snr", false)
        var meta: [String: String] = [:]
        let pred = try r.choice("prediction_type", ["epsilon", "sample", "v_prediction"], def: "epsilon")!
        meta["prediction"] = predictions[pred]!
        if cls == "DDPMScheduler" || r.values["variance_type"] != nil {
            meta["variance_type"] = try r.choice("variance_type", ["fixed_small", "fixed_small_log", "fixed_large",
                                                                   "fixed_large_log", "learned", "learned_range"], def: "fixed_small")!
        }
        meta["clip_sample"] = String(try r.bool("clip_sample", true))
        meta["clip_sample_range"] = String(try r.double("clip_sample_range", 1))
        meta["timestep_spacing"] = try r.choice("timestep_spacing", ["leading", "trailing", "linspace"], def: "leading")!
        meta["steps_offset"] = String(try r.int("steps_offset", 0, range: 0...Schedule.maxT))
        if cls == "DDIMScheduler" { meta["set_alpha_to_one"] = String(try r.bool("set_alpha_to_one", true)) }
        guard try !r.bool("thresholding", false) else {
            throw DDPMError("\(file): unsupported thresholding = true (dynamic thresholding is not implemented)")
        }
        _ = try r.double("dynamic_thresholding_ratio", 0.995); _ = try r.double("sample_max_value", 1)
        try r.finish()
        let schedule: Schedule
        if let trained {
            var betas = trained
            if zsnr { betas = try Schedule.rescaleZeroTerminalSNR(betas) }
            schedule = try Schedule(betas: betas, kind: .custom, zeroTerminalSNR: zsnr)
        } else {
            let k: ScheduleKind = ["linear": .linear, "scaled_linear": .scaledLinear, "squaredcos_cap_v2": .cosine, "sigmoid": .sigmoid][kind]!
            do { schedule = try Schedule.make(k, T: T, betaStart: b0, betaEnd: b1, zeroTerminalSNR: zsnr) }
            catch let e as DDPMError { throw DDPMError("\(file): \(e.message)") }
        }
        meta[schedulerKey] = DiffusersJSON.text(json, indent: nil)
        return (schedule, meta)
    }

    /// The scheduler config of a schedule: the recorded original (if any) with the schedule's
    /// keys and the prediction type overwritten, else a DDPMScheduler config with its defaults.
    public static func schedulerJSON(_ s: Schedule, metadata m: [String: String], learnSigma: Bool) throws -> [(String, JSONValue)] {
        var pairs: [(String, JSONValue)]
        if let raw = m[schedulerKey], case .object(let p)? = try? JSON.parse(Array(raw.utf8)) {
            pairs = p
        } else {
            let j = DiffusersJSON.self
            pairs = [("_class_name", .string("DDPMScheduler")), ("_diffusers_version", .string(DiffusersUNet.version)),
                     ("clip_sample", .bool(true)), ("clip_sample_range", j.float(1)), ("dynamic_thresholding_ratio", j.float(0.995)),
                     ("sample_max_value", j.float(1)), ("steps_offset", j.int(0)), ("thresholding", .bool(false)),
                     ("timestep_spacing", .string("leading")),
                     ("variance_type", .string(learnSigma ? "learned_range" : "fixed_small"))]
        }
        func set(_ k: String, _ v: JSONValue) {
            if let i = pairs.firstIndex(where: { $0.0 == k }) { pairs[i].1 = v } else { pairs.append((k, v)) }
        }
        let j = DiffusersJSON.self
        set("num_train_timesteps", j.int(s.T))
        switch s.kind {
        case .linear, .scaledLinear, .quadratic, .sigmoid, .cosine:
            let name: [ScheduleKind: String] = [.linear: "linear", .scaledLinear: "scaled_linear", .quadratic: "scaled_linear",
                                                .sigmoid: "sigmoid", .cosine: "squaredcos_cap_v2"]
            set("beta_schedule", .string(name[s.kind]!))
            set("trained_betas", .null)
            if s.kind != .cosine { set("beta_start", j.float(s.betaStart)); set("beta_end", j.float(s.betaEnd)) }
            else if pairs.first(where: { $0.0 == "beta_start" }) == nil { set("beta_start", j.float(1e-4)); set("beta_end", j.float(0.02)) }
            set("rescale_betas_zero_snr", .bool(s.zeroTerminalSNR))
        case .custom:
            // the betas as stored (after any zero-SNR rescaling, which is therefore not redone)
            set("beta_schedule", .string("linear")); set("trained_betas", .array(s.beta.map(j.float)))
            if pairs.first(where: { $0.0 == "beta_start" }) == nil { set("beta_start", j.float(1e-4)); set("beta_end", j.float(0.02)) }
            set("rescale_betas_zero_snr", .bool(false))
        }
        let pred = m["prediction"] ?? "eps"
        guard let name = predictions.first(where: { $0.value == pred })?.key else {
            throw DDPMError("metadata prediction = '\(pred)' has no diffusers prediction_type")
        }
        set("prediction_type", .string(name))
        return pairs
    }

    /// Reads a UNet2DModel or pipeline directory as a model (kind = model; the one set of
    /// weights stands for both EMA and raw). Without a scheduler config: DDPMScheduler's
    /// defaults (linear, T = 1000, 1e-4 ... 0.02).
    public static func load(directory d: String,
                            factory: ([String: String]) throws -> Network = makeAnyNetwork(architecture:)) throws -> LoadedModel {
        var unetDir = d
        var sched = try Schedule.make(.linear)
        var meta: [String: String] = [:]
        if isFile(d + "/" + indexFile) {
            var r = try DiffusersConfigReader(file: indexFile, json: try DiffusersJSON.read(d + "/" + indexFile))
            let cls = try r.choice("_class_name", ["DDPMPipeline", "DDIMPipeline"], def: "DDPMPipeline")!
            _ = r.take("_diffusers_version"); _ = r.take("_name_or_path")
            for component in ["unet", "scheduler"] {
                guard case .array(let a)? = r.take(component), a.count == 2 else {
                    throw DDPMError("\(indexFile): missing or malformed component \(component)")
                }
            }
            try r.finish()
            meta[pipelineKey] = cls
            unetDir = d + "/unet"
            let sf = d + "/scheduler/" + schedulerFile
            guard isFile(sf) else { throw DDPMError("pipeline directory without scheduler/\(schedulerFile)") }
            let (s, m) = try schedule(from: try DiffusersJSON.read(sf), file: "scheduler/" + schedulerFile)
            sched = s
            meta.merge(m) { $1 }
        } else if !isFile(d + "/" + DiffusersUNet.configFile) {
            throw DDPMError("a directory that is neither a diffusers pipeline (\(indexFile)) nor a UNet2DModel (\(DiffusersUNet.configFile))")
        }
        let cfgPath = unetDir + "/" + DiffusersUNet.configFile
        guard isFile(cfgPath) else { throw DDPMError("no \(cfgPath)") }
        let config = try DiffusersUNet.config(from: try DiffusersJSON.read(cfgPath),
                                              file: unetDir == d ? DiffusersUNet.configFile : "unet/" + DiffusersUNet.configFile)
        let wPath = unetDir + "/" + DiffusersUNet.weightsFile
        guard isFile(wPath) else {
            let bin = isFile(unetDir + "/diffusion_pytorch_model.bin") ? " (only safetensors weights are read; found diffusion_pytorch_model.bin)" : ""
            throw DDPMError("no \(wPath)\(bin)")
        }
        let network = try factory(NetworkConfig.unet(config).architecture)
        do { try DiffusersUNet.readWeights(try Frame.load(path: wPath), store: network.store, into: network.store.values) }
        catch let e as DDPMError { throw DDPMError("\(DiffusersUNet.weightsFile): \(e.message)") }
        meta["loss"] = config.learnSigma ? LossKind.hybrid.rawValue : LossKind.simple.rawValue
        meta["classes"] = String(config.classes)
        meta["data_shape"] = archList(config.inShape)
        meta["source"] = "diffusers"
        let frame = ModelFile.frame(network: network, ema: EMA(store: network.store, decay: 0), schedule: sched, info: meta)
        return LoadedModel(network: network, schedule: sched, metadata: frame.metadata, frame: frame)
    }

    /// Writes a model as a diffusers directory `path` (created; it must not exist): a pipeline
    /// directory (model_index.json, unet/, scheduler/) or, `pipeline` false, a UNet2DModel
    /// directory. Written into a temporary sibling, then renamed.
    public static func write(_ model: LoadedModel, weights: WeightChoice = .ema, to path: String, pipeline: Bool = true) throws {
        guard case .unet(let c) = model.config else {
            throw DDPMError("only a U-Net noise predictor can be written as a diffusers UNet2DModel (this is arch \(model.config.arch))")
        }
        var st = stat()
        guard lstat(path, &st) != 0 else { throw DDPMError("\(path) exists (the exporter writes a new directory)") }
        // the chosen weights, read from the model frame into a buffer of the store's layout
        let store = model.network.store
        let buffer = ParameterStore.allocate(store.count)
        defer { buffer.baseAddress!.deallocate() }
        let prefix = weights == .ema ? "ema." : "raw."
        try ModelFile.read(model.frame, store: store, into: [(prefix, buffer)])
        let rows = DiffusersUNet.classRows(store: store, buffer: buffer)
        let config = DiffusersJSON.file(try DiffusersUNet.configJSON(c, classRows: rows))
        let wf = DiffusersUNet.weightsFrame(store: store, buffer: buffer)
        let tmp = path + ".tmp.\(getpid())"
        func mkdirOrThrow(_ p: String) throws {
            guard mkdir(p, 0o755) == 0 else { throw DDPMError("cannot create \(p): \(String(cString: strerror(errno)))") }
        }
        do {
            try mkdirOrThrow(tmp)
            let unet = pipeline ? tmp + "/unet" : tmp
            if pipeline {
                try mkdirOrThrow(unet)
                try mkdirOrThrow(tmp + "/scheduler")
                let sched = try schedulerJSON(model.schedule, metadata: model.metadata, learnSigma: c.learnSigma)
                try FileBytes.write(DiffusersJSON.file(sched), to: tmp + "/scheduler/" + schedulerFile)
                let schedClass: String
                if case .string(let s)? = sched.first(where: { $0.0 == "_class_name" })?.1 { schedClass = s } else { schedClass = "DDPMScheduler" }
                let index: [(String, JSONValue)] = [
                    ("_class_name", .string(model.metadata[pipelineKey] ?? "DDPMPipeline")),
                    ("_diffusers_version", .string(DiffusersUNet.version)),
                    ("scheduler", .array([.string("diffusers"), .string(schedClass)])),
                    ("unet", .array([.string("diffusers"), .string("UNet2DModel")]))]
                try FileBytes.write(DiffusersJSON.file(index), to: tmp + "/" + indexFile)
            }
            try FileBytes.write(config, to: unet + "/" + DiffusersUNet.configFile)
            try wf.save(path: unet + "/" + DiffusersUNet.weightsFile)
            guard rename(tmp, path) == 0 else { throw DDPMError("cannot rename \(tmp) to \(path): \(String(cString: strerror(errno)))") }
        } catch {
            removeTree(tmp)
            throw error
        }
    }

    /// Removes a directory tree this process created (the exporter's temporary directory).
    static func removeTree(_ p: String) {
        if let names = try? FileManager.default.contentsOfDirectory(atPath: p) {
            for n in names {
                let q = p + "/" + n
                if isDirectory(q) { removeTree(q) } else { unlink(q) }
            }
        }
        rmdir(p)
    }
}
