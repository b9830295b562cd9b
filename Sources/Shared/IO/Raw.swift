// Headerless little-endian element data <-> Tensor, and reading raw samples
// from a file descriptor in batches (`tensor from-raw`).
#if canImport(Glibc)
import Glibc
#endif

extension Tensor {
    /// A tensor from little-endian element bytes (this machine is little-endian).
    public static func fromBytes(_ raw: UnsafeRawBufferPointer, dtype: DType, shape: [Int]) -> Tensor {
        let n = shape.reduce(1, *)
        precondition(raw.count == n * dtype.byteSize)
        func load<T>(_: T.Type) -> [T] {
            [T](unsafeUninitializedCapacity: n) { buf, done in
                if n > 0 { UnsafeMutableRawBufferPointer(buf).copyMemory(from: raw) }
                done = n
            }
        }
        switch dtype {
        case .f32: return Tensor(load(Float.self), shape: shape)
        case .f64: return Tensor(load(Double.self), shape: shape)
        case .i64: return Tensor(load(Int64.self), shape: shape)
        case .i32: return Tensor(load(Int32.self), shape: shape)
        case .u8: return Tensor(load(UInt8.self), shape: shape)
        }
    }

    /// Calls `body` with the tensor's little-endian element bytes.
    public func withBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        switch storage {
        case .f32(let a): return try a.withUnsafeBytes(body)
        case .f64(let a): return try a.withUnsafeBytes(body)
        case .i64(let a): return try a.withUnsafeBytes(body)
        case .i32(let a): return try a.withUnsafeBytes(body)
        case .u8(let a): return try a.withUnsafeBytes(body)
        }
    }

    /// The first-axis rows `range` (a tensor of shape [range.count] + shape[1...]).
    public func rows(_ range: Range<Int>) -> Tensor {
        precondition(!shape.isEmpty && range.lowerBound >= 0 && range.upperBound <= shape[0])
        let per = shape.dropFirst().reduce(1, *)
        let s = [range.count] + Array(shape.dropFirst())
        let r = range.lowerBound * per ..< range.upperBound * per
        switch storage {
        case .f32(let a): return Tensor(Array(a[r]), shape: s)
        case .f64(let a): return Tensor(Array(a[r]), shape: s)
        case .i64(let a): return Tensor(Array(a[r]), shape: s)
        case .i32(let a): return Tensor(Array(a[r]), shape: s)
        case .u8(let a): return Tensor(Array(a[r]), shape: s)
        }
    }
}

/// Reads fixed-size raw samples from a file descriptor, `batch` at a time.
public final class RawReader {
    public let fd: Int32
    public let name: String
    public let dtype: DType
    public let sampleShape: [Int]
    public let batch: Int
    public private(set) var samplesRead = 0
    let sampleBytes: Int

    public init(fd: Int32, name: String, dtype: DType, sampleShape: [Int], batch: Int) throws {
        guard !sampleShape.isEmpty, sampleShape.allSatisfy({ $0 > 0 }) else {
            throw DDPMError("a sample shape must list positive sizes, e.g. [1, 28, 28] (got \(sampleShape))")
        }
        guard batch > 0 else { throw DDPMError("the batch size must be positive (got \(batch))") }
        guard RawReader.fits(sampleShape: sampleShape, dtype: dtype, batch: batch) else {
            throw DDPMError("\(batch) samples of shape \(sampleShape) (\(dtype.rawValue)) exceed 4 GiB in one batch")
        }
        self.fd = fd; self.name = name; self.dtype = dtype; self.sampleShape = sampleShape; self.batch = batch
        sampleBytes = sampleShape.reduce(1, *) * dtype.byteSize
    }

    /// True when one batch of `batch` samples stays within 4 GiB.
    public static func fits(sampleShape: [Int], dtype: DType, batch: Int) -> Bool {
        var bytes = dtype.byteSize
        for d in sampleShape + [batch] {
            let (m, o) = bytes.multipliedReportingOverflow(by: d)
            guard !o, m <= 1 << 32 else { return false }
            bytes = m
        }
        return true
    }

    /// The next batch ([b] + sampleShape, b <= batch), nil at the end. A trailing partial sample is an error.
    public func next() throws -> Tensor? {
        var buf = [UInt8](repeating: 0, count: sampleBytes * batch)
        let done: Int
        do { done = try buf.withUnsafeMutableBytes { try FileDescriptor.readFully(fd, $0) } }
        catch let e as DDPMError { throw DDPMError("\(name): \(e.message)") }
        if done == 0 { return nil }
        guard done % sampleBytes == 0 else {
            throw DDPMError("\(name): trailing partial sample: \(done % sampleBytes) of \(sampleBytes) bytes after sample \(samplesRead + done / sampleBytes) (shape \(sampleShape), \(dtype.rawValue))")
        }
        let b = done / sampleBytes
        samplesRead += b
        return buf.withUnsafeBytes { Tensor.fromBytes(UnsafeRawBufferPointer(rebasing: $0[0..<done]), dtype: dtype, shape: [b] + sampleShape) }
    }
}
