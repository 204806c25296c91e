/*
 * versions.h - the torch versions the adapter knows.  A runtime is built for
 * one torch in this range; CMake reads these two lines and refuses a torch
 * outside it (TORCHRW_UNKNOWN_TORCH=ON builds anyway, with the newest facts).
 *
 * Supporting a new torch is a change inside shim/adapter/: add its facts to
 * adapter.c (and entry_points.h if the tracer's signature changed), then move
 * TRW_TORCH_NEWEST.
 */
#ifndef TRW_ADAPTER_VERSIONS_H
#define TRW_ADAPTER_VERSIONS_H

#define TRW_TORCH_OLDEST "1.13"
#define TRW_TORCH_NEWEST "2.14"

#endif
