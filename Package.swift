// swift-tools-version:6.0
// DDPM toolkit: small Unix tools over one tensor stream format, one shared library.
//
// Language mode: Swift 5 for every target, chosen deliberately. The numeric
// kernels hand raw buffer pointers to DispatchQueue.concurrentPerform; Swift 6's
// strict Sendable checking rejects that without wrappers on every loop.
import PackageDescription
import Foundation

/// AVX-512 (znver4) or AVX2 + FMA (haswell) code generation for our own kernels (SIMD8<Float> loops, exp, GroupNorm,
/// im2col, the normal generator) when the building machine has them: the project's machines do
/// (docs/BENCHMARKS.md); anywhere else the build falls back to the x86-64 baseline.
/// DDPM_ISA=avx2 caps an AVX-512 machine's build at AVX2 (the ISA matrix benchmark builds it
/// beside the default one, in its own --scratch-path).
let cpuFlags: [String] = {
    #if arch(x86_64) && os(Linux)
    let cap = ProcessInfo.processInfo.environment["DDPM_ISA"] ?? ""
    if let info = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
       info.contains(" avx2"), info.contains(" fma") {
        // AVX-512 (F, BW, VL) machines such as AMD Zen 4/5: 512-bit vectors for our loops.
        if cap != "avx2", info.contains(" avx512f"), info.contains(" avx512bw"), info.contains(" avx512vl") {
            return ["-target-cpu", "znver4", "-D", "AVX512"]
        }
        return ["-target-cpu", "haswell", "-D", "AVX2"]
    }
    #endif
    return []
}()

let swift5: [SwiftSetting] = [.swiftLanguageMode(.v5)]
/// Executables: `@main` in main.swift beside other files of the tool needs -parse-as-library.
let tool: [SwiftSetting] = swift5 + [.unsafeFlags(["-parse-as-library"])]
let shared: [Target.Dependency] = ["Shared", .product(name: "ArgumentParser", package: "swift-argument-parser")]

let package = Package(
    name: "ddpm",
    products: [
        .executable(name: "schedule", targets: ["schedule"]),
        .executable(name: "tensor", targets: ["tensor"]),
        .executable(name: "denoise", targets: ["denoise"]),
        .executable(name: "guide", targets: ["guide"]),
        .executable(name: "train", targets: ["train"]),
        .executable(name: "ddpm-bench", targets: ["ddpm-bench"]),
        .executable(name: "noise", targets: ["noise"]),
        .executable(name: "classify", targets: ["classify"]),
        .executable(name: "evaluate", targets: ["evaluate"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        .systemLibrary(name: "COpenBLAS", pkgConfig: "openblas", providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(name: "CPNG", pkgConfig: "libpng", providers: [.apt(["libpng-dev"])]),
        .systemLibrary(name: "CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
        // Open MPI, loaded at run time when a tool is started by mpirun (Sources/CMPI/include/cmpi.h).
        .target(name: "CMPI", path: "Sources/CMPI", linkerSettings: [.linkedLibrary("dl")]),
        .target(name: "Shared",
                dependencies: ["COpenBLAS", "CPNG", "CZlib", "CMPI",
                               .product(name: "ArgumentParser", package: "swift-argument-parser")],
                swiftSettings: swift5 + [.unsafeFlags(["-Ounchecked", "-wmo"] + cpuFlags)]),
        .executableTarget(name: "schedule", dependencies: shared, swiftSettings: tool),
        .executableTarget(name: "tensor", dependencies: shared, swiftSettings: tool),
        .executableTarget(name: "denoise", dependencies: shared, swiftSettings: tool),
        .executableTarget(name: "guide", dependencies: shared, swiftSettings: tool),
        .executableTarget(name: "train", dependencies: shared, swiftSettings: tool),
        .executableTarget(name: "ddpm-bench", dependencies: shared, swiftSettings: tool),
        .executableTarget(name: "noise", dependencies: shared, swiftSettings: tool),
        .executableTarget(name: "classify", dependencies: shared, swiftSettings: tool),
        .executableTarget(name: "evaluate", dependencies: shared, swiftSettings: tool),
        // Fixtures/ (model files of older versions) are read by path from the repository, not bundled.
        .testTarget(name: "SharedTests", dependencies: ["Shared"], exclude: ["Fixtures"], swiftSettings: swift5),
    ]
)
