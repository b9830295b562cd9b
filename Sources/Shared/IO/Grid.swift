// From `x` tensors to 8/16-bit pixels: one image per sample, or a grid of samples.
// Sample values map to pixels by p = round((clamp(x, -1, 1) + 1) / 2 * 255)
// (PNG.quantize); [N,H,W] is read as [N,1,H,W].

/// The image geometry of an `x` tensor: [N,C,H,W] with C = 1 or 3, or [N,H,W].
public struct ImageShape: Sendable, Equatable {
    public var count: Int
    public var channels: Int
    public var height: Int
    public var width: Int

    public init(count: Int, channels: Int, height: Int, width: Int) {
        self.count = count; self.channels = channels; self.height = height; self.width = width
    }

    public init(_ t: Tensor) throws {
        switch t.shape.count {
        case 4: self.init(count: t.shape[0], channels: t.shape[1], height: t.shape[2], width: t.shape[3])
        case 3: self.init(count: t.shape[0], channels: 1, height: t.shape[1], width: t.shape[2])
        default: throw DDPMError("x has shape \(t.shape); images need [N,C,H,W] (C = 1 or 3) or [N,H,W]")
        }
        guard channels == 1 || channels == 3 else {
            throw DDPMError("x has \(channels) channels (shape \(t.shape)); PNG output needs C = 1 (gray) or 3 (RGB)")
        }
        guard height > 0, width > 0 else { throw DDPMError("x has an empty image size (shape \(t.shape))") }
    }

    public var sampleSize: Int { channels * height * width }
}

/// A canvas of cols x rows cells, `pad` pixels around and between cells, each
/// sample upscaled `scale` times by nearest neighbour. Interleaved samples (HWC).
public struct ImageGrid {
    public let cols: Int, rows: Int, pad: Int, scale: Int
    public let image: ImageShape
    public let width: Int, height: Int
    /// 16-bit samples (0 ... 65535) interleaved, `channels` per pixel; cast down for 8-bit files.
    public private(set) var pixels: [UInt16]
    public let maxValue: Float
    /// The largest width or height of a grid image, in pixels.
    public static let maxSide = 1 << 16

    /// Pad and blank cells take the value `background` (in [-1, 1]; default 1, white).
    public init(cols: Int, rows: Int, image: ImageShape, pad: Int = 2, scale: Int = 1, background: Float = 1, sixteenBit: Bool = false) throws {
        guard cols > 0, rows > 0 else { throw DDPMError("a grid needs at least one column and one row (got \(cols)x\(rows))") }
        guard pad >= 0, scale >= 1 else { throw DDPMError("grid padding must be >= 0 and the scale >= 1 (got \(pad) and \(scale))") }
        self.cols = cols; self.rows = rows; self.pad = pad; self.scale = scale; self.image = image
        // n cells of `size` pixels scaled k times, pad pixels around each; nil past 2^16 (or on overflow:
        // every factor comes from a flag or a file).
        func side(_ n: Int, _ size: Int) -> Int? {
            let (a, o1) = n.multipliedReportingOverflow(by: size)
            let (b, o2) = a.multipliedReportingOverflow(by: scale)
            let (c, o3) = (n + 1).multipliedReportingOverflow(by: pad)
            let (d, o4) = b.addingReportingOverflow(c)
            return o1 || o2 || o3 || o4 || d > ImageGrid.maxSide ? nil : d
        }
        guard let w = side(cols, image.width), let h = side(rows, image.height) else {
            throw DDPMError("a grid of \(cols)x\(rows) cells of \(image.width)x\(image.height) pixels, scale \(scale), padding \(pad) is over \(ImageGrid.maxSide) pixels wide or high")
        }
        width = w
        height = h
        maxValue = sixteenBit ? 65535 : 255
        pixels = [UInt16](repeating: UInt16(PNG.quantize(background, maxValue: maxValue)), count: width * height * image.channels)
    }

    public var capacity: Int { cols * rows }

    /// Draws one sample (C*H*W floats, channel-major) into cell `cell` (row-major order).
    public mutating func place(_ cell: Int, sample: UnsafeBufferPointer<Float>) {
        precondition(cell >= 0 && cell < capacity && sample.count == image.sampleSize)
        let c = image.channels, h = image.height, w = image.width, k = scale
        let x0 = pad + (cell % cols) * (w * k + pad)
        let y0 = pad + (cell / cols) * (h * k + pad)
        let plane = h * w
        let W = width, mv = maxValue
        pixels.withUnsafeMutableBufferPointer { px in
            for y in 0..<(h * k) {
                let sy = y / k
                let rowBase = ((y0 + y) * W + x0) * c
                for x in 0..<(w * k) {
                    let s = sy * w + x / k
                    for ch in 0..<c { px[rowBase + x * c + ch] = UInt16(PNG.quantize(sample[ch * plane + s], maxValue: mv)) }
                }
            }
        }
    }

    /// Writes the canvas as a PNG (8-bit unless built with sixteenBit).
    public func write(path: String) throws {
        if maxValue == 255 {
            try PNG.write8(path: path, width: width, height: height, channels: image.channels, pixels: pixels.map { UInt8($0) })
        } else {
            try PNG.write16(path: path, width: width, height: height, channels: image.channels, pixels: pixels)
        }
    }

    /// Writes the canvas as a PNG file, or its bytes to stdout.
    public func write(to output: BinaryOutput) throws {
        guard output == .stdout else { return try write(path: output.name) }
        if maxValue == 255 {
            try output.write(PNG.encode8(width: width, height: height, channels: image.channels, pixels: pixels.map { UInt8($0) }))
        } else {
            try output.write(PNG.encode16(width: width, height: height, channels: image.channels, pixels: pixels))
        }
    }
}

/// A grid size written COLSxROWS, e.g. 8x8 (or 8X8).
public struct GridSize: Sendable, Equatable {
    public var cols: Int
    public var rows: Int

    public init(cols: Int, rows: Int) { self.cols = cols; self.rows = rows }

    /// Reads "COLSxROWS" (two integers >= 0; zero is left for the caller to refuse); nil when malformed.
    public init?(_ text: String) {
        let parts = text.lowercased().split(separator: "x", omittingEmptySubsequences: false).map { Int($0) }
        guard parts.count == 2, let c = parts[0], let r = parts[1], c >= 0, r >= 0 else { return nil }
        self.init(cols: c, rows: r)
    }

    /// cols * rows (Int.max when that overflows: both come from the command line).
    public var capacity: Int {
        let (c, overflow) = cols.multipliedReportingOverflow(by: rows)
        return overflow ? Int.max : c
    }
}
