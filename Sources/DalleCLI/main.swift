#if canImport(Glibc)
import Glibc
#endif

// `dalle`: encode images to dVAE tokens and decode them back. See `usage` in Commands.swift.
exit(runCLI(Array(CommandLine.arguments.dropFirst())))
