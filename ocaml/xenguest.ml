type domid = int

exception Error of { step : string; code : int; message : string }
exception Cancelled of { step : string; message : string }

let () = Callback.register_exception "Xenguest.Error" (Error { step = ""; code = 0; message = "" })

type handle

type failure = string * int * string

(* ECANCELED: only a cancelled build fails with it (Xen's calls never return it). *)
let ecanceled = 125

let raise_failure (step, code, message) =
  if code = ecanceled then raise (Cancelled { step; message })
  else raise (Error { step; code; message })
let ok = function Ok v -> v | Error f -> raise_failure f

external open_ : string -> handle = "stub_xenguest_open"
external open_error : handle -> failure option = "stub_xenguest_open_error"
external close : handle -> unit = "stub_xenguest_close"

let checked_open kind =
  let h = open_ kind in
  match open_error h with Some f -> raise_failure f | None -> h

let interface_open () = checked_open "real"

type cancel

external cancel_create : unit -> cancel = "stub_xenguest_cancel_create"
external cancel : cancel -> unit = "stub_xenguest_cancel"
external is_cancelled : cancel -> bool = "stub_xenguest_is_cancelled"

let cancel_token () = cancel_create ()
let token = function Some c -> c | None -> cancel_create ()

type level = [ `Error | `Warning | `Info ]
type log = level -> string -> unit

(* The stubs' levels: 0 error, 1 warning, 2 info. *)
let level_of_int = function 0 -> `Error | 1 -> `Warning | _ -> `Info

let deliver log lines =
  match log with
  | None -> ()
  | Some f -> List.iter (fun (level, text) -> f (level_of_int level) text) lines

type built = { store_mfn : nativeint; console_mfn : nativeint; protocol : string option }

type report = {
  pages_by_order : (int * int) list;
  pages_by_node : int list option;
  hypercalls : (string * int) list;
  populate_calls : int;
  xenstore_writes : (string * string) list;
  elapsed_us : int;
}

type build_args = {
  domid : domid;
  mem_max_mib : int;
  mem_start_mib : int;
  image : string;
  cmdline : string;
  ramdisk : string option;
  modules : (string * string) list;
  features : string;
  flags : int;
  store_port : int;
  store_domid : domid;
  console_port : int;
  console_domid : domid;
  vgpu : bool;
  pci_passthrough : string list;
  mem_pnode : int option;
  force : bool;
}

let args ~domid ~mem_max_mib ~mem_start_mib ~image ~store_port ~console_port =
  {
    domid; mem_max_mib; mem_start_mib; image; cmdline = ""; ramdisk = None; modules = [];
    features = ""; flags = 0; store_port; store_domid = 0; console_port; console_domid = 0;
    vgpu = false; pci_passthrough = []; mem_pnode = None; force = false;
  }

type raw_outcome =
  ( (int * int * string option)
    * ((int * int) list * int list option * (string * int) list * (string * string) list * int * int),
    failure )
  result
  * (int * string) list

type build_stub =
  handle -> int -> int -> int -> string -> string -> string -> (string * string) list -> string ->
  int -> int * int * int * int -> bool -> string -> int -> bool -> cancel -> raw_outcome

(* Externals must spell out their arrows; the three share [build_stub]'s shape. *)
external hvm_stub :
  handle -> int -> int -> int -> string -> string -> string -> (string * string) list -> string ->
  int -> int * int * int * int -> bool -> string -> int -> bool -> cancel -> raw_outcome
  = "stub_xc_hvm_build_bytecode" "stub_xc_hvm_build"

external pvh_stub :
  handle -> int -> int -> int -> string -> string -> string -> (string * string) list -> string ->
  int -> int * int * int * int -> bool -> string -> int -> bool -> cancel -> raw_outcome
  = "stub_xc_pvh_build_bytecode" "stub_xc_pvh_build"

external pv_stub :
  handle -> int -> int -> int -> string -> string -> string -> (string * string) list -> string ->
  int -> int * int * int * int -> bool -> string -> int -> bool -> cancel -> raw_outcome
  = "stub_xc_pv_build_bytecode" "stub_xc_pv_build"

let of_outcome ?log (outcome, lines) =
  deliver log lines;
  let ((store, console, protocol), (by_order, by_node, calls, writes, elapsed, populate)) =
    ok outcome
  in
  ( { store_mfn = Nativeint.of_int store; console_mfn = Nativeint.of_int console; protocol },
    {
      pages_by_order = by_order; pages_by_node = by_node; hypercalls = calls;
      populate_calls = populate; xenstore_writes = writes; elapsed_us = elapsed;
    } )

let run (stub : build_stub) ?cancel ?log h a =
  of_outcome ?log
    (stub h a.domid a.mem_max_mib a.mem_start_mib a.image a.cmdline
       (Option.value a.ramdisk ~default:"")
       a.modules a.features a.flags
       (a.store_port, a.store_domid, a.console_port, a.console_domid)
       a.vgpu
       (String.concat "," a.pci_passthrough)
       (Option.value a.mem_pnode ~default:(-1))
       a.force (token cancel))

let hvm_build ?cancel ?log h a = run hvm_stub ?cancel ?log h a
let pvh_build ?cancel ?log h a = run pvh_stub ?cancel ?log h a
let pv_build ?cancel ?log h a = run pv_stub ?cancel ?log h a

external argv_stub : handle -> string list -> cancel -> raw_outcome
  = "stub_xenguest_build_of_argv"

let build_of_argv ?cancel ?log h argv = of_outcome ?log (argv_stub h argv (token cancel))

module Sim = struct
  type t = handle

  let create ~spec = checked_open ("sim:" ^ spec)
  let handle t = t

  external create_domain_ : handle -> bool -> int -> int -> (int, failure) result
    = "stub_xenguest_sim_create_domain"

  external destroy_domain_ : handle -> int -> (unit, failure) result
    = "stub_xenguest_sim_destroy_domain"

  external write_ : handle -> string -> string -> (unit, failure) result
    = "stub_xenguest_sim_write"

  external read_ : handle -> string -> (string option, failure) result
    = "stub_xenguest_sim_read"

  external domain_ :
    handle -> int -> (int * int * (int * int) list * int list * int * int, failure) result
    = "stub_xenguest_sim_domain"

  external host_ : handle -> (int * int * string option, failure) result
    = "stub_xenguest_sim_host"

  let create_domain t ?(hvm = true) ?(vcpus = 1) ~max_mem_kib () =
    ok (create_domain_ t hvm max_mem_kib vcpus)

  let destroy_domain t domid = ok (destroy_domain_ t domid)
  let write t path value = ok (write_ t path value)
  let read t path = ok (read_ t path)

  type domain = {
    tot_pages : int;
    max_pages : int;
    pages_by_order : (int * int) list;
    pages_by_node : int list;
    pod_entries : int;
    repopulated_pages : int;
  }

  let domain t domid =
    let tot_pages, max_pages, pages_by_order, pages_by_node, pod_entries, repopulated_pages =
      ok (domain_ t domid)
    in
    { tot_pages; max_pages; pages_by_order; pages_by_node; pod_entries; repopulated_pages }

  let free_pages t = let free, _, _ = ok (host_ t) in free
  let outstanding_claims t = let _, claims, _ = ok (host_ t) in claims

  let check_accounting t =
    match ok (host_ t) with _, _, None -> Ok () | _, _, Some why -> Error why

  external inject_fault_ : handle -> string -> int -> int -> int -> (unit, failure) result
    = "stub_xenguest_sim_inject_fault"

  external fail_next_store_ : handle -> string -> int -> (unit, failure) result
    = "stub_xenguest_sim_fail_next_store"

  external inject_panic_ : handle -> string -> (unit, failure) result
    = "stub_xenguest_sim_inject_panic"

  let inject_fault t ~call ?(nth = 1) ?domid ~errno () =
    ok (inject_fault_ t call nth (Option.value domid ~default:(-1)) errno)

  let fail_next_store t ~op ~errno = ok (fail_next_store_ t op errno)
  let inject_panic t ~op = ok (inject_panic_ t op)

  external set_call_latency_ : handle -> int -> (unit, failure) result
    = "stub_xenguest_sim_set_call_latency"

  let set_call_latency t ~us = ok (set_call_latency_ t us)
end
