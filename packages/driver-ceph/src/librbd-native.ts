import koffi from "koffi";

/**
 * librados/librbd's C API (Debian's librados2/librbd1, what the `rbd` CLI itself links), bound
 * with koffi. Every call goes through `.async`, so it runs on a libuv worker thread and the event
 * loop never waits on the cluster. Handles are opaque pointers; output arrays are koffi.alloc'd
 * C memory, decoded and freed by the caller.
 */

/** rbd_snap_info_t */
const SnapInfo = koffi.struct("rbd_snap_info_t", { id: "uint64_t", size: "uint64_t", name: "const char *" });
/** rbd_linked_image_spec_t */
const LinkedImageSpec = koffi.struct("rbd_linked_image_spec_t", {
  pool_id: "int64_t",
  pool_name: "char *",
  pool_namespace: "char *",
  image_id: "char *",
  image_name: "char *",
  trash: "bool",
});
/** rbd_snap_spec_t (namespace_type is an enum: 0 user, 1 group, 2 trash, 3 mirror) */
const SnapSpec = koffi.struct("rbd_snap_spec_t", { id: "uint64_t", namespace_type: "int", name: "char *" });

export const RBD_SNAP_NAMESPACE_TYPE_TRASH = 2;

export interface DecodedSnapInfo {
  id: bigint | number;
  size: number;
  name: string;
}
export interface DecodedLinkedImage {
  pool_id: number | bigint;
  pool_name: string;
  pool_namespace: string;
  image_name: string;
  image_id: string;
  trash: boolean;
}
export interface DecodedSnapSpec {
  id: bigint | number;
  namespace_type: number;
  name: string;
}

const SIGNATURES = {
  rados: [
    "int rados_create(_Out_ void **cluster, const char *id)",
    "int rados_conf_read_file(void *cluster, const char *path)",
    "int rados_conf_set(void *cluster, const char *option, const char *value)",
    "int rados_connect(void *cluster)",
    "void rados_shutdown(void *cluster)",
    "int rados_ioctx_create(void *cluster, const char *pool, _Out_ void **ioctx)",
    "void rados_ioctx_destroy(void *ioctx)",
  ],
  rbd: [
    "int rbd_list(void *io, void *names, _Inout_ size_t *size)",
    "int rbd_create(void *io, const char *name, uint64_t size, _Inout_ int *order)",
    "int rbd_remove(void *io, const char *name)",
    "int rbd_open(void *io, const char *name, _Out_ void **image, const char *snap)",
    "int rbd_open_read_only(void *io, const char *name, _Out_ void **image, const char *snap)",
    "int rbd_close(void *image)",
    "int rbd_get_size(void *image, _Out_ uint64_t *size)",
    "int rbd_get_parent(void *image, void *parent_image, void *parent_snap)",
    "void rbd_linked_image_spec_cleanup(void *spec)",
    "void rbd_snap_spec_cleanup(void *spec)",
    "int rbd_snap_get_trash_namespace(void *image, uint64_t snap_id, void *original_name, size_t max_length)",
    "void rbd_image_options_create(_Out_ void **opts)",
    "void rbd_image_options_destroy(void *opts)",
    "int rbd_clone3(void *p_io, const char *p_name, const char *p_snap, void *c_io, const char *c_name, void *c_opts)",
    "int rbd_flatten(void *image)",
    "int rbd_copy(void *image, void *dest_io, const char *destname)",
    "int rbd_snap_create(void *image, const char *name)",
    "int rbd_snap_remove(void *image, const char *name)",
    "int rbd_snap_protect(void *image, const char *name)",
    "int rbd_snap_unprotect(void *image, const char *name)",
    "int rbd_snap_is_protected(void *image, const char *name, _Out_ int *is_protected)",
    "int rbd_snap_list(void *image, void *snaps, _Inout_ int *max_snaps)",
    "void rbd_snap_list_end(void *snaps)",
    "int rbd_list_children3(void *image, void *images, _Inout_ size_t *max_images)",
    "void rbd_linked_image_spec_list_cleanup(void *images, size_t num_images)",
    "int64_t rbd_read(void *image, uint64_t ofs, size_t len, void *buf)",
    "int64_t rbd_write(void *image, uint64_t ofs, size_t len, void *buf)",
  ],
} as const;

type AsyncFn = (...args: unknown[]) => Promise<number>;
type FnName =
  | "rados_create"
  | "rados_conf_read_file"
  | "rados_conf_set"
  | "rados_connect"
  | "rados_shutdown"
  | "rados_ioctx_create"
  | "rados_ioctx_destroy"
  | "rbd_list"
  | "rbd_create"
  | "rbd_remove"
  | "rbd_open"
  | "rbd_open_read_only"
  | "rbd_close"
  | "rbd_get_size"
  | "rbd_get_parent"
  | "rbd_linked_image_spec_cleanup"
  | "rbd_snap_spec_cleanup"
  | "rbd_snap_get_trash_namespace"
  | "rbd_image_options_create"
  | "rbd_image_options_destroy"
  | "rbd_clone3"
  | "rbd_flatten"
  | "rbd_copy"
  | "rbd_snap_create"
  | "rbd_snap_remove"
  | "rbd_snap_protect"
  | "rbd_snap_unprotect"
  | "rbd_snap_is_protected"
  | "rbd_snap_list"
  | "rbd_snap_list_end"
  | "rbd_list_children3"
  | "rbd_linked_image_spec_list_cleanup"
  | "rbd_read"
  | "rbd_write";
export type Librbd = Record<FnName, AsyncFn> & {
  snapInfos(ptr: unknown, count: number): DecodedSnapInfo[];
  linkedImages(ptr: unknown, count: number): DecodedLinkedImage[];
  snapSpec(ptr: unknown): DecodedSnapSpec;
  alloc(what: "snapInfo" | "linkedImage" | "snapSpec", count: number): unknown;
  free(ptr: unknown): void;
};

const TYPES = { snapInfo: SnapInfo, linkedImage: LinkedImageSpec, snapSpec: SnapSpec } as const;

function nameOf(signature: string): string {
  const match = /\s\**(\w+)\(/.exec(signature);
  if (!match?.[1]) throw new Error(`bad signature: ${signature}`);
  return match[1];
}

function bind(
  lib: ReturnType<typeof koffi.load>,
  signatures: readonly string[],
  into: Record<string, AsyncFn>,
) {
  for (const signature of signatures) {
    const fn = lib.func(signature);
    into[nameOf(signature)] = (...args: unknown[]) =>
      new Promise<number>((resolve, reject) => {
        fn.async(...args, (error: unknown, result: unknown) =>
          error ? reject(error) : resolve(Number(result ?? 0)),
        );
      });
  }
}

let loaded: Librbd | undefined;

/** Loads the libraries once per process (throws when librbd1/librados2 are not installed). */
export function loadLibrbd(): Librbd {
  if (loaded) return loaded;
  const fns: Record<string, AsyncFn> = {};
  bind(koffi.load("librados.so.2"), SIGNATURES.rados, fns);
  bind(koffi.load("librbd.so.1"), SIGNATURES.rbd, fns);
  loaded = {
    ...fns,
    snapInfos: (ptr, count) => (count === 0 ? [] : koffi.decode(ptr, SnapInfo, count)) as DecodedSnapInfo[],
    linkedImages: (ptr, count) =>
      (count === 0 ? [] : koffi.decode(ptr, LinkedImageSpec, count)) as DecodedLinkedImage[],
    snapSpec: (ptr) => koffi.decode(ptr, SnapSpec) as DecodedSnapSpec,
    alloc: (what, count) => koffi.alloc(TYPES[what], Math.max(1, count)),
    free: (ptr) => koffi.free(ptr),
  } as Librbd;
  return loaded;
}
