// diffusers' UNet2DModel (config.json + diffusion_pytorch_model.safetensors) <-> UNetConfig and
// the U-Net's parameter slots. The slot names are diffusers' own, so the weights map one to
// one, except: the class table (diffusers: K rows; ours: K rows + the null class, a zero row
// when imported, dropped again on export when it is zero) and the legacy attention names
// query/key/value/proj_attn (renamed to_q/to_k/to_v/to_out.0 on load, as diffusers does).
// Behaviour matched against diffusers 0.42.1 (models/unets/unet_2d.py, unet_2d_blocks.py,
// resnet.py, embeddings.py, attention_processor.py); any option outside this subset is an error
// naming the key and value, never a different network.

public enum DiffusersUNet {
    /// The diffusers version whose UNet2DModel this matches (written into exported configs).
    public static let version = "0.42.1"
    public static let configFile = "config.json"
    public static let weightsFile = "diffusion_pytorch_model.safetensors"

    /// config.json -> UNetConfig. Absent keys take UNet2DModel's defaults.
    public static func config(from json: JSONValue, file: String = configFile) throws -> UNetConfig {
        let lim = ConfigLimits.self
        var r = try DiffusersConfigReader(file: file, json: json)
        _ = try r.choice("_class_name", ["UNet2DModel"], def: "UNet2DModel")
        _ = r.take("_diffusers_version"); _ = r.take("_name_or_path")
        let size: (Int, Int)
        switch r.take("sample_size") {
        case .number(_, true, let i?)? where i >= 1 && i <= Int64(lim.sampleSize): size = (Int(i), Int(i))
        case .array(let a)? where a.count == 2:
            guard case .number(_, true, let h?) = a[0], case .number(_, true, let w?) = a[1],
                  h >= 1, w >= 1, h <= Int64(lim.sampleSize), w <= Int64(lim.sampleSize) else {
                throw r.error("sample_size", .array(a), "a positive integer or [height, width]")
            }
            size = (Int(h), Int(w))
        case let v?: throw r.error("sample_size", v, "a positive integer or [height, width]")
        case nil: throw DDPMError("\(file): missing sample_size (the image size is needed to build the network)")
        }
        let inC = try r.int("in_channels", 3, range: 1...lim.width)
        let outC = try r.int("out_channels", 3, range: 1...lim.width)
        let center = try r.bool("center_input_sample", false)
        _ = try r.choice("time_embedding_type", ["positional"], def: "positional")
        let freqShift = try r.int("freq_shift", 0, range: 0...lim.width)
        let flip = try r.bool("flip_sin_to_cos", true)
        let down = try r.strings("down_block_types", maxCount: lim.levels)
        _ = try r.choice("mid_block_type", ["UNetMidBlock2D"], def: "UNetMidBlock2D")
        let up = try r.strings("up_block_types", maxCount: lim.levels)
        let boc = try r.ints("block_out_channels", maxCount: lim.levels, range: 1...lim.width)
        let layers = try r.int("layers_per_block", 2, range: 1...lim.depth)
        let midScale = try r.double("mid_block_scale_factor", 1)
        let pad = try r.int("downsample_padding", 1, range: 0...1)
        _ = try r.choice("downsample_type", ["conv"], def: "conv")
        _ = try r.choice("upsample_type", ["conv"], def: "conv")
        let dropout = try r.double("dropout", 0)
        _ = try r.choice("act_fn", ["silu", "swish"], def: "silu")
        let headDim: Int?
        switch r.take("attention_head_dim") {
        case nil: headDim = 8
        case .null?: headDim = nil
        case .number(_, true, let d?)? where d >= 1 && d <= Int64(lim.width): headDim = Int(d)
        case let v?: throw r.error("attention_head_dim", v, "null or a positive integer")
        }
        let groups = try r.int("norm_num_groups", 32, range: 1...lim.width)
        let attnGroups = try r.int("attn_norm_num_groups", 0, range: 0...lim.width)
        let eps = try r.double("norm_eps", 1e-5)
        let shift = try r.choice("resnet_time_scale_shift", ["default", "scale_shift"], def: "default")
        let addAttention = try r.bool("add_attention", true)
        _ = try r.choice("class_embed_type", [nil], def: nil)
        let classes = try r.int("num_class_embeds", 0, range: 1...lim.classes)
        _ = try r.int("num_train_timesteps", 0, range: 0...Int(Int32.max))   // used by "learned" embeddings only
        let tembDim = try r.int("time_embedding_dim", 4 * boc[0], range: 1...lim.width)
        try r.finish()

        let L = boc.count
        guard down.count == L, up.count == L else {
            throw DDPMError("\(file): \(L) block_out_channels but \(down.count) down and \(up.count) up block types")
        }
        guard tembDim == 4 * boc[0] else {
            throw DDPMError("\(file): unsupported time_embedding_dim = \(tembDim) (supported: null or 4 x block_out_channels[0] = \(4 * boc[0]))")
        }
        var attnLevels: [Int] = []
        for i in 0..<L {
            let attn: Bool
            switch down[i] {
            case "DownBlock2D": attn = false
            case "AttnDownBlock2D": attn = true
            default: throw DDPMError("\(file): unsupported down block type \(down[i]) (supported: DownBlock2D, AttnDownBlock2D)")
            }
            let expected = attn ? "AttnUpBlock2D" : "UpBlock2D"
            guard up[L - 1 - i] == expected else {
                throw DDPMError("\(file): up_block_types[\(L - 1 - i)] = \(up[L - 1 - i]) does not mirror down_block_types[\(i)] = \(down[i]) (expected \(expected))")
            }
            if attn { attnLevels.append(i) }
        }
        guard boc.allSatisfy({ $0 % boc[0] == 0 }) else {
            throw DDPMError("\(file): unsupported block_out_channels = \(boc) (each must be a multiple of the first)")
        }
        if let d = headDim {
            for c in attnLevels.map({ boc[$0] }) + (addAttention ? [boc[L - 1]] : []) where c % d != 0 {
                throw DDPMError("\(file): attention_head_dim = \(d) does not divide \(c) attention channels")
            }
        }
        guard outC == inC || outC == 2 * inC else {
            throw DDPMError("\(file): unsupported out_channels = \(outC) (supported: in_channels \(inC), or \(2 * inC) for a learned variance)")
        }
        guard attnGroups == 0 || attnGroups == groups else {
            throw DDPMError("\(file): unsupported attn_norm_num_groups = \(attnGroups) (supported: null or norm_num_groups \(groups))")
        }
        guard size.0 % (1 << (L - 1)) == 0, size.1 % (1 << (L - 1)) == 0 else {
            throw DDPMError("\(file): sample_size \(size.0)x\(size.1) is not divisible by \(1 << (L - 1)), as \(L) levels need")
        }
        var c = UNetConfig(inShape: [inC, size.0, size.1], channels: boc[0], mults: boc.map { $0 / boc[0] },
                           resBlocks: layers, attnResolutions: attnLevels.map { size.0 >> $0 },
                           heads: headDim == nil ? 1 : 0, headDim: headDim ?? 8, groups: groups, dropout: Float(dropout),
                           classes: classes, learnSigma: outC == 2 * inC, seed: 0)
        c.normEps = eps; c.flipSinToCos = flip; c.freqShift = freqShift; c.downsamplePadding = pad
        c.scaleShift = shift == "scale_shift"; c.midScale = midScale; c.midAttention = addAttention
        // UNetMidBlock2D: attn_groups = resnet_groups under "default", none (no GroupNorm) otherwise
        c.midAttentionNorm = !(c.scaleShift && attnGroups == 0)
        c.centerInput = center
        if let issue = c.issues.first { throw DDPMError("\(file): \(issue.message)") }
        return c
    }

    /// UNetConfig -> config.json (the keys diffusers 0.42.1 writes). `classRows`: rows of the
    /// exported class table. Throws when diffusers cannot express the network.
    public static func configJSON(_ c: UNetConfig, classRows: Int, version: String = version) throws -> [(String, JSONValue)] {
        let L = c.mults.count, sizes = c.levelSizes
        let boc = c.mults.map { $0 * c.channels }
        let attnLevels = (0..<L).filter { c.attnResolutions.contains(sizes[$0]) }
        let attnChannels = attnLevels.map { boc[$0] } + (c.midAttention ? [boc[L - 1]] : [])
        let headDim: JSONValue
        if c.heads == 1 {
            headDim = .null
        } else if c.heads == 0 {
            if let bad = attnChannels.first(where: { $0 % c.headDim != 0 }) {
                throw DDPMError("diffusers cannot express attention heads of width \(c.headDim) over \(bad) channels")
            }
            headDim = DiffusersJSON.int(c.headDim)
        } else {
            guard let c0 = attnChannels.first, attnChannels.allSatisfy({ $0 == c0 }), c0 % c.heads == 0 else {
                throw DDPMError("diffusers cannot express \(c.heads) attention heads at every attention level (it fixes the head width)")
            }
            headDim = DiffusersJSON.int(c0 / c.heads)
        }
        if !c.scaleShift && !c.midAttentionNorm {
            throw DDPMError("diffusers cannot express a mid-block attention without GroupNorm outside scale_shift")
        }
        let s = DiffusersJSON.self
        func strings(_ v: [String]) -> JSONValue { .array(v.map { .string($0) }) }
        let down = (0..<L).map { attnLevels.contains($0) ? "AttnDownBlock2D" : "DownBlock2D" }
        let up = (0..<L).reversed().map { attnLevels.contains($0) ? "AttnUpBlock2D" : "UpBlock2D" }
        let outC = c.learnSigma ? 2 * c.inShape[0] : c.inShape[0]
        return [
            ("_class_name", .string("UNet2DModel")), ("_diffusers_version", .string(version)),
            ("act_fn", .string("silu")), ("add_attention", .bool(c.midAttention)),
            ("attention_head_dim", headDim),
            ("attn_norm_num_groups", c.scaleShift && c.midAttentionNorm ? s.int(c.groups) : .null),
            ("block_out_channels", .array(boc.map(s.int))), ("center_input_sample", .bool(c.centerInput)),
            ("class_embed_type", .null), ("down_block_types", strings(down)),
            ("downsample_padding", s.int(c.downsamplePadding)), ("downsample_type", .string("conv")),
            ("dropout", s.float(Double("\(c.dropout)")!)),   // Float's shortest decimal: 0.1, not 0.10000000149
            ("flip_sin_to_cos", .bool(c.flipSinToCos)),
            ("freq_shift", s.int(c.freqShift)), ("in_channels", s.int(c.inShape[0])),
            ("layers_per_block", s.int(c.resBlocks)),
            ("mid_block_scale_factor", c.midScale == c.midScale.rounded() ? s.int(Int(c.midScale)) : s.float(c.midScale)),
            ("mid_block_type", .string("UNetMidBlock2D")), ("norm_eps", s.float(c.normEps)),
            ("norm_num_groups", s.int(c.groups)), ("num_class_embeds", classRows > 0 ? s.int(classRows) : .null),
            ("num_train_timesteps", .null), ("out_channels", s.int(outC)),
            ("resnet_time_scale_shift", .string(c.scaleShift ? "scale_shift" : "default")),
            ("sample_size", c.inShape[1] == c.inShape[2] ? s.int(c.inShape[1]) : .array([s.int(c.inShape[1]), s.int(c.inShape[2])])),
            ("time_embedding_dim", .null), ("time_embedding_type", .string("positional")),
            ("up_block_types", strings(up)), ("upsample_type", .string("conv")),
        ]
    }

    /// The legacy attention names of old checkpoints, renamed as diffusers does on load.
    static func modernName(_ name: String) -> String {
        guard name.contains(".attentions.") else { return name }
        for (old, new) in [(".query.", ".to_q."), (".key.", ".to_k."), (".value.", ".to_v."), (".proj_attn.", ".to_out.0.")]
        where name.contains(old) {
            return name.replacingOccurrences(of: old, with: new)
        }
        return name
    }

    static let classTable = "class_embedding.weight"

    /// Copies the tensors of a diffusers weights frame into `buffer` (the store's layout).
    /// Every tensor is checked (known, shape, F32, finite) before anything is copied; a
    /// tensor the network has no slot for is an error.
    public static func readWeights(_ frame: Frame, store: ParameterStore, into buffer: UnsafeMutableBufferPointer<Float>) throws {
        var byName: [String: (String, Tensor)] = [:]
        for (name, t) in frame.tensors {
            let m = modernName(name)
            guard byName[m] == nil else { throw DDPMError("tensors '\(byName[m]!.0)' and '\(name)' are the same parameter") }
            byName[m] = (name, t)
        }
        var values: [[Float]] = []
        for slot in store.slots {
            guard let (orig, t) = byName.removeValue(forKey: slot.name) else {
                throw DDPMError("no tensor '\(slot.name)' (the network has this parameter)")
            }
            var shape = slot.shape
            if slot.name == classTable { shape[0] -= 1 }   // + the null class, a zero row
            guard t.shape == shape else { throw DDPMError("tensor '\(orig)' has shape \(t.shape), the network expects \(shape)") }
            guard case .f32(var a) = t.storage else { throw DDPMError("tensor '\(orig)' must be F32, found \(t.dtype.rawValue)") }
            if let bad = a.firstIndex(where: { !$0.isFinite }) {
                throw DDPMError("tensor '\(orig)' holds a non-finite value (\(a[bad])) at element \(bad)")
            }
            if slot.name == classTable { a += [Float](repeating: 0, count: slot.shape[1]) }
            values.append(a)
        }
        if let extra = byName.values.map(\.0).sorted().first {
            throw DDPMError("unexpected tensor '\(extra)' (no such parameter in the network the config describes)")
        }
        for (slot, a) in zip(store.slots, values) { _ = store.slice(buffer, slot.range).update(fromContentsOf: a) }
    }

    /// The rows of the exported class table: K + 1 (with the null class), or K when the null
    /// row is all zeros (a table imported from diffusers).
    public static func classRows(store: ParameterStore, buffer: UnsafeMutableBufferPointer<Float>) -> Int {
        guard let slot = store.slots.first(where: { $0.name == classTable }) else { return 0 }
        let rows = slot.shape[0], dim = slot.shape[1]
        let last = store.slice(buffer, slot.range)[((rows - 1) * dim)...]
        return last.allSatisfy { $0 == 0 } ? rows - 1 : rows
    }

    /// The weights frame (diffusers' names, F32, metadata format = pt) of `buffer`.
    public static func weightsFrame(store: ParameterStore, buffer: UnsafeMutableBufferPointer<Float>) -> Frame {
        var f = Frame(metadata: ["format": "pt"])
        let rows = classRows(store: store, buffer: buffer)
        for slot in store.slots {
            var a = Array(store.slice(buffer, slot.range)), shape = slot.shape
            if slot.name == classTable && rows < shape[0] { shape[0] = rows; a.removeLast(slot.shape[1]) }
            f[slot.name] = Tensor(a, shape: shape)
        }
        return f
    }
}
