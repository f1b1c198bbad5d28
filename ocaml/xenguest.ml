type domid = int

exception Error of { step : string; code : int; message : string }
exception Cancelled of { step : string; message : string }

let () = Callback.register_exception "Xenguest.Error" (Error { step = ""; code = 0; message = "" })

type handle

(* The stubs' records (ocaml/stubs/src): each is declared here and there in the same field
   order. A failure is raised as Error, or Cancelled for ECANCELED, which only a cancelled
   build fails with (Xen's calls never return it). *)
type failure = { step : string; code : int; message : string }

let ecanceled = 125

let raise_failure { step; code; message } =
  if code = ecanceled then raise (Cancelled { step; message })
  else raise (Error { step; code; message })

let ok = function Ok v -> v | Error f -> raise_failure f

external open_ : unit -> handle = "stub_xenguest_open"
external open_error : handle -> failure option = "stub_xenguest_open_error"
external close : handle -> unit = "stub_xenguest_close"

let interface_open () =
  let h = open_ () in
  match open_error h with Some f -> raise_failure f | None -> h

type cancel

external cancel_create : unit -> cancel = "stub_xenguest_cancel_create"
external cancel : cancel -> unit = "stub_xenguest_cancel"
external is_cancelled : cancel -> bool = "stub_xenguest_is_cancelled"

let cancel_token () = cancel_create ()
let token = function Some c -> c | None -> cancel_create ()

type level = [ `Error | `Warning | `Info ]
type log = level -> string -> unit

let deliver log lines =
  match log with None -> () | Some f -> List.iter (fun (level, text) -> f level text) lines

type built = { store_mfn : nativeint; console_mfn : nativeint; protocol : string option }

type report = {
  pages_by_order : (int * int) list;
  pages_by_node : int list option;
  hypercalls : (string * int) list;
  populate_calls : int;
  xenstore_writes : (string * string) list;
  elapsed_us : int;
  hypervisor_us : int;
  xenstore_us : int;
  images_us : int;
  own_us : int;
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

(* What the build stubs return: the frames as ints (ocaml-interop has no nativeint), and
   the build's log lines whatever its outcome. *)
type raw_built = { store_frame : int; console_frame : int; raw_protocol : string option }
type logged = { outcome : (raw_built * report, failure) result; lines : (level * string) list }

external hvm_stub : handle -> build_args -> cancel -> logged = "stub_xc_hvm_build"
external pvh_stub : handle -> build_args -> cancel -> logged = "stub_xc_pvh_build"
external pv_stub : handle -> build_args -> cancel -> logged = "stub_xc_pv_build"

let of_logged ?log { outcome; lines } =
  deliver log lines;
  let raw, report = ok outcome in
  ( {
      store_mfn = Nativeint.of_int raw.store_frame;
      console_mfn = Nativeint.of_int raw.console_frame;
      protocol = raw.raw_protocol;
    },
    report )

let hvm_build ?cancel ?log h a = of_logged ?log (hvm_stub h a (token cancel))
let pvh_build ?cancel ?log h a = of_logged ?log (pvh_stub h a (token cancel))
let pv_build ?cancel ?log h a = of_logged ?log (pv_stub h a (token cancel))

external argv_stub : handle -> string list -> cancel -> logged = "stub_xenguest_build_of_argv"

let build_of_argv ?cancel ?log h argv = of_logged ?log (argv_stub h argv (token cancel))
