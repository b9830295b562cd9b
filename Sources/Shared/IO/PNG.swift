// PNG in and out through libpng's simplified API (png_image_*), which expands
// 8/16-bit, gray/RGB/RGBA/palette files without setjmp.
//
// Values: a pixel p of an 8-bit image maps to x = p / 255 * 2 - 1, of a 16-bit
// image to x = p / 65535 * 2 - 1, so x lies in [-1, 1]. Writing maps back with
// p = round((clamp(x, -1, 1) + 1) / 2 * maxValue).
// Alpha: an alpha channel (RGBA, gray+alpha, palette with tRNS) is removed by
// compositing onto black, as libpng does (x = colour * alpha).
// 16-bit files are read as libpng's 16-bit linear values: files without a
// gAMA/sRGB chunk (and files written here, tagged gamma 1.0) keep their stored
// values exactly; 16-bit files tagged sRGB are converted to linear light.
import CPNG
#if canImport(Glibc)
import Glibc
#endif

/// An image as floats in [-1, 1], channel-major: data[c][y][x] flattened (C, H, W).
public struct PNGImage: Sendable {
    public var width: Int
    public var height: Int
    public var channels: Int        // 1 (gray) or 3 (RGB)
    public var data: [Float]        // C*H*W values in [-1, 1]
    public var sixteenBit: Bool     // the file stored 16-bit samples

    public init(width: Int, height: Int, channels: Int, data: [Float], sixteenBit: Bool = false) {
        self.width = width; self.height = height; self.channels = channels
        self.data = data; self.sixteenBit = sixteenBit
    }
}

public enum PNG {
    /// What to do with the file's channels.
    public enum ChannelMode: Sendable { case asStored, gray, rgb }

    /// The channel count a file would produce (1 gray, 3 colour), its size and depth, without decoding it.
    public static func probe(path: String) throws -> (width: Int, height: Int, channels: Int, sixteenBit: Bool) {
        var image = png_image()
        image.version = UInt32(PNG_IMAGE_VERSION)
        guard png_image_begin_read_from_file(&image, path) != 0 else {
            throw DDPMError("\(path): not a readable PNG (\(message(&image)))")
        }
        defer { png_image_free(&image) }
        return (Int(image.width), Int(image.height),
                image.format & UInt32(PNG_FORMAT_FLAG_COLOR) != 0 ? 3 : 1,
                image.format & UInt32(PNG_FORMAT_FLAG_LINEAR) != 0)
    }

    /// Reads a PNG into floats in [-1, 1] (see the file comment for scaling and alpha).
    public static func read(path: String, mode: ChannelMode = .asStored) throws -> PNGImage {
        var image = png_image()
        image.version = UInt32(PNG_IMAGE_VERSION)
        guard png_image_begin_read_from_file(&image, path) != 0 else {
            throw DDPMError("\(path): not a readable PNG (\(message(&image)))")
        }
        let color: Bool
        switch mode {
        case .asStored: color = image.format & UInt32(PNG_FORMAT_FLAG_COLOR) != 0
        case .gray: color = false
        case .rgb: color = true
        }
        let sixteen = image.format & UInt32(PNG_FORMAT_FLAG_LINEAR) != 0
        let channels = color ? 3 : 1
        image.format = (color ? UInt32(PNG_FORMAT_FLAG_COLOR) : 0) | (sixteen ? UInt32(PNG_FORMAT_FLAG_LINEAR) : 0)
        let w = Int(image.width), h = Int(image.height)
        guard w > 0, h > 0, w * h <= 1 << 28 else {
            png_image_free(&image)
            throw DDPMError("\(path): unsupported PNG size \(w)x\(h)")
        }
        let n = w * h * channels
        var out = [Float](repeating: 0, count: n)
        if sixteen {
            var buf = [UInt16](repeating: 0, count: n)   // zero: alpha composites onto black
            let ok = buf.withUnsafeMutableBytes { png_image_finish_read(&image, nil, $0.baseAddress, Int32(w * channels), nil) }
            guard ok != 0 else { throw DDPMError("\(path): corrupt PNG (\(message(&image)))") }
            interleavedToPlanar(buf, w: w, h: h, c: channels, into: &out, maxValue: 65535)
        } else {
            var buf = [UInt8](repeating: 0, count: n)
            let ok = buf.withUnsafeMutableBytes { png_image_finish_read(&image, nil, $0.baseAddress, Int32(w * channels), nil) }
            guard ok != 0 else { throw DDPMError("\(path): corrupt PNG (\(message(&image)))") }
            interleavedToPlanar(buf, w: w, h: h, c: channels, into: &out, maxValue: 255)
        }
        return PNGImage(width: w, height: h, channels: channels, data: out, sixteenBit: sixteen)
    }

    /// x = Pixels.unit(p), HWC -> CHW.
    static func interleavedToPlanar<T: BinaryInteger>(_ buf: [T], w: Int, h: Int, c: Int, into out: inout [Float], maxValue: Float) {
        let plane = w * h
        buf.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                for i in 0..<plane {
                    for k in 0..<c { dst[k * plane + i] = Pixels.unit(Float(src[i * c + k]), maxValue: maxValue) }
                }
            }
        }
    }

    /// The inverse of Pixels.unit, clamped: round((clamp(x, -1, 1) + 1) / 2 * maxValue). NaN maps to 0.
    @inline(__always)
    public static func quantize(_ x: Float, maxValue: Float) -> Int {
        let c = x.isNaN ? -1 : min(max(x, -1), 1)
        return Int(((c + 1) * 0.5 * maxValue).rounded())
    }

    /// Writes interleaved 8-bit samples (gray, RGB or RGBA, by `channels`) atomically.
    public static func write8(path: String, width: Int, height: Int, channels: Int, pixels: [UInt8]) throws {
        precondition(pixels.count == width * height * channels)
        try write(path: path, width: width, height: height, format: formatFor(channels), stride: width * channels) { ptr, image in
            pixels.withUnsafeBytes { png_image_write_to_file(image, ptr, 0, $0.baseAddress, Int32(width * channels), nil) }
        }
    }

    /// Writes interleaved 16-bit samples (linear, tagged gamma 1.0 by libpng) atomically.
    public static func write16(path: String, width: Int, height: Int, channels: Int, pixels: [UInt16]) throws {
        precondition(pixels.count == width * height * channels)
        try write(path: path, width: width, height: height, format: formatFor(channels) | UInt32(PNG_FORMAT_FLAG_LINEAR), stride: width * channels) { ptr, image in
            pixels.withUnsafeBytes { png_image_write_to_file(image, ptr, 0, $0.baseAddress, Int32(width * channels), nil) }
        }
    }

    /// The bytes of the PNG file `write8` writes (for stdout).
    public static func encode8(width: Int, height: Int, channels: Int, pixels: [UInt8]) throws -> [UInt8] {
        precondition(pixels.count == width * height * channels)
        return try pixels.withUnsafeBytes { try encode(width: width, height: height, format: formatFor(channels), stride: width * channels, pixels: $0) }
    }

    /// The bytes of the PNG file `write16` writes (for stdout).
    public static func encode16(width: Int, height: Int, channels: Int, pixels: [UInt16]) throws -> [UInt8] {
        precondition(pixels.count == width * height * channels)
        return try pixels.withUnsafeBytes {
            try encode(width: width, height: height, format: formatFor(channels) | UInt32(PNG_FORMAT_FLAG_LINEAR), stride: width * channels, pixels: $0)
        }
    }

    /// png_image_write_to_memory: the same encoder and settings as png_image_write_to_file.
    /// A first guess at the size; when too small, libpng reports the size needed and we retry.
    static func encode(width: Int, height: Int, format: UInt32, stride: Int, pixels: UnsafeRawBufferPointer) throws -> [UInt8] {
        var capacity = pixels.count + pixels.count / 4 + 4 * height + 4096
        while true {
            var image = png_image()
            image.version = UInt32(PNG_IMAGE_VERSION)
            image.width = UInt32(width)
            image.height = UInt32(height)
            image.format = format
            var out = [UInt8](repeating: 0, count: capacity)
            var size = png_alloc_size_t(capacity)
            let ok = out.withUnsafeMutableBytes { png_image_write_to_memory(&image, $0.baseAddress, &size, 0, pixels.baseAddress, Int32(stride), nil) }
            if ok != 0 { return Array(out[0..<Int(size)]) }
            guard Int(size) > capacity else {
                let m = message(&image)
                png_image_free(&image)
                throw DDPMError("cannot encode a PNG: \(m)")
            }
            capacity = Int(size)
        }
    }

    /// Writes an 8-bit palette image (indices into an RGB colormap of up to 256 entries); used by tests.
    public static func writePalette(path: String, width: Int, height: Int, indices: [UInt8], colormap: [UInt8]) throws {
        precondition(colormap.count % 3 == 0 && colormap.count <= 768 && indices.count == width * height)
        try write(path: path, width: width, height: height, format: UInt32(PNG_FORMAT_FLAG_COLOR | PNG_FORMAT_FLAG_COLORMAP), stride: width,
                  entries: colormap.count / 3) { ptr, image in
            indices.withUnsafeBytes { ind in
                colormap.withUnsafeBytes { png_image_write_to_file(image, ptr, 0, ind.baseAddress, Int32(width), $0.baseAddress) }
            }
        }
    }

    static func formatFor(_ channels: Int) -> UInt32 {
        switch channels {
        case 1: return 0
        case 2: return UInt32(PNG_FORMAT_FLAG_ALPHA)
        case 3: return UInt32(PNG_FORMAT_FLAG_COLOR)
        default: return UInt32(PNG_FORMAT_FLAG_COLOR | PNG_FORMAT_FLAG_ALPHA)
        }
    }

    /// Writes to a temporary file next to `path`, then renames it over `path` (a device or FIFO: in place).
    static func write(path: String, width: Int, height: Int, format: UInt32, stride: Int, entries: Int = 0,
                      body: (String, UnsafeMutablePointer<png_image>) -> Int32) throws {
        var image = png_image()
        image.version = UInt32(PNG_IMAGE_VERSION)
        image.width = UInt32(width)
        image.height = UInt32(height)
        image.format = format
        image.colormap_entries = UInt32(entries)
        // A device or FIFO (/dev/null) is written in place: renaming over it would replace it.
        let tmp = AtomicFile.isSpecial(path) ? path : path + ".tmp.\(getpid())"
        guard body(tmp, &image) != 0 else {
            let m = message(&image)
            png_image_free(&image)
            if tmp != path { unlink(tmp) }
            throw DDPMError("cannot write \(path): \(m)")
        }
        guard tmp == path || rename(tmp, path) == 0 else {
            let m = String(cString: strerror(errno))
            unlink(tmp)
            throw DDPMError("cannot rename \(tmp) to \(path): \(m)")
        }
    }

    static func message(_ image: inout png_image) -> String {
        withUnsafeBytes(of: &image.message) { raw in
            let bytes = raw.prefix { $0 != 0 }
            return String(decoding: bytes, as: UTF8.self)
        }
    }
}
