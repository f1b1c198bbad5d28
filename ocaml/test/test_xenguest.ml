(* Builds through the OCaml module on a simulated host. *)
open OUnit2

let hvmloader = "/usr/lib/xen-4.17/boot/hvmloader"
let mib = 1024

let new_domain sim ~mem_mib =
  let domid = Xenguest_sim.create_domain sim ~vcpus:2 ~max_mem_kib:((mem_mib * 1024) + 1024) () in
  let path k = Printf.sprintf "/local/domain/%d/platform/%s" domid k in
  Xenguest_sim.write sim (path "vcpu/number") "2";
  Xenguest_sim.write sim (path "vcpu/current") "2";
  domid

let hvm_args ?(mem_start_mib = 4 * mib) domid =
  Xenguest.args ~domid ~mem_max_mib:(4 * mib) ~mem_start_mib ~image:hvmloader ~store_port:1
    ~console_port:2

let expect_error ~step f =
  match f () with
  | _ -> assert_failure ("expected Xenguest.Error at " ^ step)
  | exception Xenguest.Error { step = s; code; message } ->
      assert_equal ~printer:(fun s -> s) step s;
      (code, message)

let test_hvm_build _ =
  let sim = Xenguest_sim.create ~spec:"nodes=2,node_mib=8192" in
  let domid = new_domain sim ~mem_mib:(4 * mib) in
  let result, report = Xenguest.hvm_build (Xenguest_sim.handle sim) (hvm_args domid) in
  assert_equal ~printer:Nativeint.to_string 1044476n result.store_mfn;
  assert_equal ~printer:Nativeint.to_string 1044479n result.console_mfn;
  assert_equal None result.protocol;
  assert_equal ~printer:string_of_int 2 (List.assoc 18 report.pages_by_order lsr 18);
  assert_bool "far fewer populate calls than libxenguest's 259" (report.populate_calls <= 6);
  assert_bool "elapsed measured" (report.elapsed_us > 0);
  (* The parts are disjoint and cover the build, but for rounding each to whole us. *)
  let parts = report.hypervisor_us + report.xenstore_us + report.images_us + report.own_us in
  assert_bool "the time split adds up" (abs (parts - report.elapsed_us) <= 4);
  assert_bool "hvmloader read" (report.images_us > 0);
  let hole = Printf.sprintf "/local/domain/%d/vm-data/mmio-hole-size" domid in
  assert_equal (Some "268435456") (Xenguest_sim.read sim hole);
  assert_bool "write reported" (List.mem (hole, "268435456") report.xenstore_writes);
  let d = Xenguest_sim.domain sim domid in
  assert_equal ~printer:string_of_int 0 d.repopulated_pages;
  assert_equal ~printer:string_of_int ((4 * mib * 256) - 32 + 16) d.tot_pages;
  assert_equal (Ok ()) (Xenguest_sim.check_accounting sim)

(* xapi's platform/mmio_size_mib (MiB) and the C key platform/mmio_hole_size (bytes): the
   larger sets the hole; out of range is an Error naming the key. *)
let test_mmio_size_mib _ =
  let hole_after keys =
    let sim = Xenguest_sim.create ~spec:"nodes=2,node_mib=8192" in
    let domid = new_domain sim ~mem_mib:(4 * mib) in
    List.iter
      (fun (k, v) -> Xenguest_sim.write sim (Printf.sprintf "/local/domain/%d/platform/%s" domid k) v)
      keys;
    ignore (Xenguest.hvm_build (Xenguest_sim.handle sim) (hvm_args domid));
    Xenguest_sim.read sim (Printf.sprintf "/local/domain/%d/vm-data/mmio-hole-size" domid)
  in
  let show = function Some v -> v | None -> "none" in
  assert_equal ~printer:show (Some "1073741824") (hole_after [ ("mmio_size_mib", "1024") ]);
  assert_equal ~printer:show (Some "1073741824")
    (hole_after [ ("mmio_size_mib", "512"); ("mmio_hole_size", "0x40000000") ]);
  assert_equal ~printer:show (Some "536870912")
    (hole_after [ ("mmio_size_mib", "512"); ("mmio_hole_size", "0x10000000") ]);
  let _, message =
    expect_error ~step:"get_flags" (fun () -> hole_after [ ("mmio_size_mib", "4096") ])
  in
  assert_equal ~printer:(fun s -> s)
    "xenguest: get_flags: [22] /local/domain/1/platform/mmio_size_mib = '4096': must be at most 2048 (MiB)"
    message

let test_pod_and_node _ =
  let sim = Xenguest_sim.create ~spec:"nodes=2,node_mib=8192" in
  let domid = new_domain sim ~mem_mib:(4 * mib) in
  let a = { (hvm_args ~mem_start_mib:(2 * mib) domid) with mem_pnode = Some 1 } in
  let _, report = Xenguest.hvm_build (Xenguest_sim.handle sim) a in
  assert_bool "PoD entries" ((Xenguest_sim.domain sim domid).pod_entries > 0);
  assert_bool "pages by node reported" (report.pages_by_node <> None)

let contains ~sub s =
  let n = String.length sub in
  let rec go i = i + n <= String.length s && (String.sub s i n = sub || go (i + 1)) in
  go 0

(* The build_args record crosses the FFI as it is: each list element and option is checked
   on its own, with the binary's texts, before anything is built. *)
let test_args_record _ =
  let sim = Xenguest_sim.create ~spec:"nodes=2,node_mib=8192" in
  let h = Xenguest_sim.handle sim in
  let domid = new_domain sim ~mem_mib:(4 * mib) in
  let refused a = snd (expect_error ~step:"main" (fun () -> Xenguest.hvm_build h a)) in
  let a = hvm_args domid in
  assert_equal ~printer:(fun s -> s)
    "xenguest: main: [22] bad PCI address '0000:03:00.0,04:00.0' in -pci_passthrough (want SSSS:BB:DD.F or BB:DD.F, hex)"
    (refused { a with pci_passthrough = [ "0000:03:00.0,04:00.0" ] });
  assert_equal ~printer:(fun s -> s)
    "xenguest: main: [22] bad PCI address '' in -pci_passthrough (want SSSS:BB:DD.F or BB:DD.F, hex)"
    (refused { a with pci_passthrough = [ "03:00.0"; "" ] });
  let _, message =
    expect_error ~step:"stub_xc_build" (fun () -> Xenguest.hvm_build h { a with mem_pnode = Some (-1) })
  in
  assert_equal ~printer:(fun s -> s) "xenguest: stub_xc_build: [22] mem_pnode -1 is out of range" message;
  assert_equal ~printer:string_of_int 0 (Xenguest_sim.domain sim domid).tot_pages;
  (* Well-formed entries reach the layout, which reads each device's BARs from sysfs. *)
  let _, message =
    expect_error ~step:"hvm_build_setup_mem" (fun () ->
        Xenguest.hvm_build h { a with pci_passthrough = [ "0000:03:00.0"; "04:1f.7" ] })
  in
  assert_bool message (contains ~sub:"/sys/bus/pci/devices/0000:03:00.0/resource" message);
  ignore
    (expect_error ~step:"sim" (fun () ->
         Xenguest_sim.inject_fault sim ~call:"hvm_param_set" ~nth:0 ~errno:1 ()))

let test_errors _ =
  let _, message = expect_error ~step:"sim" (fun () -> Xenguest_sim.create ~spec:"nodes=two") in
  assert_bool "names the key" ((let n = String.length "nodes" in let rec go i = i + n <= String.length message && (String.sub message i n = "nodes" || go (i + 1)) in go 0));
  let sim = Xenguest_sim.create ~spec:"nodes=1,node_mib=4096" in
  let h = Xenguest_sim.handle sim in
  let domid = new_domain sim ~mem_mib:mib in
  let a = { (hvm_args domid) with mem_max_mib = mib; mem_start_mib = mib } in
  let code, message =
    expect_error ~step:"xc_dom_kernel_file" (fun () ->
        Xenguest.hvm_build h { a with image = "/nonexistent/hvmloader" })
  in
  assert_equal ~printer:string_of_int 2 code;
  assert_equal ~printer:(fun s -> s)
    "xenguest: xc_dom_kernel_file: [2] /nonexistent/hvmloader: No such file or directory" message;
  ignore
    (expect_error ~step:"hvm_build" (fun () ->
         Xenguest.hvm_build h { a with mem_start_mib = 2 * mib }));
  Xenguest_sim.write sim (Printf.sprintf "/local/domain/%d/platform/cores-per-socket" domid) "3";
  let _, message = expect_error ~step:"get_flags" (fun () -> Xenguest.hvm_build h a) in
  assert_equal ~printer:(fun s -> s) "Bad cores/socket setting: 3 (nr vcpus 2)" message;
  (* More than the host has free: refused before anything is allocated, ENOMEM. *)
  let code, _ = expect_error ~step:"hvm_build" (fun () ->
      let sim = Xenguest_sim.create ~spec:"nodes=1,node_mib=4096,free_mib=0:512" in
      let domid = new_domain sim ~mem_mib:mib in
      Xenguest.hvm_build (Xenguest_sim.handle sim) { a with domid }) in
  assert_equal ~printer:string_of_int 12 code;
  (* This machine has no /dev/xen: the real host cannot be opened, with the C text. *)
  let _, message = expect_error ~step:"xc_interface_open" Xenguest.interface_open in
  assert_bool message
    (let p = "xenguest: xc_interface_open: [2] Failed to open xc interface" in
     String.length message >= String.length p && String.sub message 0 (String.length p) = p);
  Xenguest.close h;
  Xenguest.close h;
  ignore (expect_error ~step:"handle" (fun () -> Xenguest.hvm_build h a))

let test_concurrent_builds _ =
  let sim = Xenguest_sim.create ~spec:"nodes=2,node_mib=40960" in
  let free = Xenguest_sim.free_pages sim in
  let h = Xenguest_sim.handle sim in
  let domids = List.init 16 (fun _ -> new_domain sim ~mem_mib:(4 * mib)) in
  let results = Array.make 16 None in
  let threads =
    List.mapi
      (fun i domid ->
        Thread.create
          (fun () -> results.(i) <- Some (fst (Xenguest.hvm_build h (hvm_args domid))))
          ())
      domids
  in
  List.iter Thread.join threads;
  Array.iter
    (function
      | Some r -> assert_equal 1044476n r.Xenguest.store_mfn | None -> assert_failure "no result")
    results;
  List.iter
    (fun domid ->
      let d = Xenguest_sim.domain sim domid in
      assert_equal ~printer:string_of_int ((4 * mib * 256) - 32 + 16) d.tot_pages;
      assert_equal 0 d.repopulated_pages)
    domids;
  assert_equal (Ok ()) (Xenguest_sim.check_accounting sim);
  List.iter (Xenguest_sim.destroy_domain sim) domids;
  assert_equal ~printer:string_of_int free (Xenguest_sim.free_pages sim);
  assert_equal ~printer:string_of_int 0 (Xenguest_sim.outstanding_claims sim);
  assert_equal (Ok ()) (Xenguest_sim.check_accounting sim)

let test_64_contending_builds _ =
  (* 64 threads, one host whose only free 1 GiB chunks (36) are on node 0: no deadlock,
     every build succeeds, each report agrees with the host, and the books balance. *)
  let sim = Xenguest_sim.create ~spec:"nodes=4,node_mib=36864,no_1g=1,no_1g=2,no_1g=3" in
  let free = Xenguest_sim.free_pages sim in
  let h = Xenguest_sim.handle sim in
  let domids = List.init 64 (fun _ -> new_domain sim ~mem_mib:(2 * mib)) in
  let args domid = Xenguest.args ~domid ~mem_max_mib:(2 * mib) ~mem_start_mib:(2 * mib)
      ~image:hvmloader ~store_port:1 ~console_port:2 in
  let reports = Array.make 64 None in
  let threads =
    List.mapi
      (fun i domid ->
        Thread.create (fun () -> reports.(i) <- Some (snd (Xenguest.hvm_build h (args domid)))) ())
      domids
  in
  List.iter Thread.join threads;
  let gig = ref 0 in
  List.iteri
    (fun i domid ->
      match reports.(i) with
      | None -> assert_failure "a build did not finish"
      | Some r ->
          let host = Xenguest_sim.domain sim domid in
          let pages o l = try List.assoc o l with Not_found -> 0 in
          assert_equal ~printer:string_of_int (pages 18 r.pages_by_order) (pages 18 host.pages_by_order);
          assert_equal ~printer:string_of_int (pages 9 r.pages_by_order) (pages 9 host.pages_by_order);
          assert_equal ~printer:string_of_int (pages 0 r.pages_by_order + 16) (pages 0 host.pages_by_order);
          assert_equal 0 host.repopulated_pages;
          gig := !gig + (pages 18 host.pages_by_order lsr 18))
    domids;
  assert_bool "at most the 36 free 1 GiB chunks" (!gig <= 36);
  assert_equal (Ok ()) (Xenguest_sim.check_accounting sim);
  List.iter (Xenguest_sim.destroy_domain sim) domids;
  assert_equal ~printer:string_of_int free (Xenguest_sim.free_pages sim);
  assert_equal (Ok ()) (Xenguest_sim.check_accounting sim)

let test_runtime_lock_released _ =
  (* One slow build (every page 4 KiB) while another OCaml thread spins: the spinner can only
     advance during the build if the build released the runtime lock. *)
  let sim = Xenguest_sim.create ~spec:"nodes=1,node_mib=4096,free_mib=0:2600,only_4k=0" in
  let h = Xenguest_sim.handle sim in
  let domid = new_domain sim ~mem_mib:1024 in
  let a = Xenguest.args ~domid ~mem_max_mib:1024 ~mem_start_mib:1024 ~image:hvmloader
      ~store_port:1 ~console_port:2 in
  let stop = ref false and ticks = ref 0 in
  let spinner = Thread.create (fun () -> while not !stop do incr ticks done) () in
  while !ticks = 0 do Thread.yield () done;
  let before = !ticks in
  let t0 = Unix.gettimeofday () in
  let _, report = Xenguest.hvm_build h a in
  let during = !ticks - before in
  stop := true;
  Thread.join spinner;
  assert_bool "a slow, all-4 KiB build" (List.assoc 0 report.pages_by_order > 200_000);
  assert_bool
    (Printf.sprintf "the other thread ran during a %.0f ms build (%d turns)"
       ((Unix.gettimeofday () -. t0) *. 1000.) during)
    (during > 10_000)

(* A hypervisor call failing mid-build: the binary's error text, and no claim left behind. *)
let test_injected_xc_fault _ =
  let sim = Xenguest_sim.create ~spec:"nodes=2,node_mib=8192" in
  let h = Xenguest_sim.handle sim in
  let domid = new_domain sim ~mem_mib:(4 * mib) in
  Xenguest_sim.inject_fault sim ~call:"hvm_param_set" ~domid ~errno:1 ();
  (match Xenguest.hvm_build h (hvm_args domid) with
  | _ -> assert_failure "expected Xenguest.Error"
  | exception Xenguest.Error { step; code; message } ->
      assert_equal ~printer:string_of_int 1 code;
      let prefix = Printf.sprintf "xenguest: %s: [1] " step in
      assert_bool ("binary's format: " ^ message)
        (String.length message > String.length prefix
        && String.sub message 0 (String.length prefix) = prefix);
      assert_bool ("names the call: " ^ message) (contains ~sub:"xc_hvm_param_set" message);
      assert_bool ("errno text: " ^ message) (contains ~sub:"Operation not permitted" message));
  assert_equal ~printer:string_of_int 0 (Xenguest_sim.outstanding_claims sim);
  Xenguest_sim.destroy_domain sim domid;
  assert_equal (Ok ()) (Xenguest_sim.check_accounting sim);
  (* An exhausted host: populate fails at every order, ENOMEM with the numbers. *)
  let domid = new_domain sim ~mem_mib:(4 * mib) in
  Xenguest_sim.inject_fault sim ~call:"domain_claim_pages" ~domid ~errno:12 ();
  let code, message =
    match Xenguest.hvm_build h (hvm_args domid) with
    | _ -> assert_failure "expected Xenguest.Error"
    | exception Xenguest.Error { code; message; _ } -> (code, message)
  in
  assert_equal ~printer:string_of_int 12 code;
  assert_bool message (contains ~sub:"[12]" message);
  ignore
    (expect_error ~step:"sim" (fun () ->
         Xenguest_sim.inject_fault sim ~call:"no_such_call" ~errno:1 ()))

(* xenstore refusing a write during the build. *)
let test_store_failure _ =
  let sim = Xenguest_sim.create ~spec:"nodes=2,node_mib=8192" in
  let domid = new_domain sim ~mem_mib:(4 * mib) in
  Xenguest_sim.fail_next_store sim ~op:"write" ~errno:13;
  (match Xenguest.hvm_build (Xenguest_sim.handle sim) (hvm_args domid) with
  | _ -> assert_failure "expected Xenguest.Error"
  | exception Xenguest.Error { code; message; _ } ->
      assert_equal ~printer:string_of_int 13 code;
      assert_bool message (contains ~sub:"[13]" message));
  ignore (expect_error ~step:"sim" (fun () -> Xenguest_sim.fail_next_store sim ~op:"mkdir" ~errno:1))

(* A panic inside the Rust core, runtime lock released: an exception, and the process and the
   host carry on. *)
let test_panic_is_an_exception _ =
  let sim = Xenguest_sim.create ~spec:"nodes=2,node_mib=8192" in
  let h = Xenguest_sim.handle sim in
  let domid = new_domain sim ~mem_mib:(4 * mib) in
  Xenguest_sim.inject_panic sim ~op:"read";
  let code, message = expect_error ~step:"panic" (fun () -> Xenguest.hvm_build h (hvm_args domid)) in
  assert_equal ~printer:string_of_int 0 code;
  assert_bool message (contains ~sub:"Rust panic" message && contains ~sub:"injected panic" message);
  Xenguest_sim.destroy_domain sim domid;
  let domid = new_domain sim ~mem_mib:(4 * mib) in
  let r, _ = Xenguest.hvm_build h (hvm_args domid) in
  assert_equal ~printer:Nativeint.to_string 1044476n r.store_mfn;
  assert_equal (Ok ()) (Xenguest_sim.check_accounting sim)

(* xenopsd's task cancel: a build running in one thread, stopped from another within one
   (deliberately slow, 20 ms) hypervisor call; the claim released and the pages given back. *)
let test_cancel_from_another_thread _ =
  let sim = Xenguest_sim.create ~spec:"nodes=1,node_mib=40960" in
  let free = Xenguest_sim.free_pages sim in
  let h = Xenguest_sim.handle sim in
  let domid = new_domain sim ~mem_mib:(32 * mib) in
  let a = Xenguest.args ~domid ~mem_max_mib:(32 * mib) ~mem_start_mib:(32 * mib)
      ~image:hvmloader ~store_port:1 ~console_port:2 in
  Xenguest_sim.set_call_latency sim ~us:20_000;
  let c = Xenguest.cancel_token () in
  let outcome = ref None and stopped_at = ref 0. in
  let t =
    Thread.create
      (fun () ->
        outcome :=
          Some
            (match Xenguest.hvm_build ~cancel:c h a with
            | _ -> Ok ()
            | exception e -> Error e);
        stopped_at := Unix.gettimeofday ())
      ()
  in
  Thread.delay 0.3;
  assert_bool "not cancelled yet" (not (Xenguest.is_cancelled c));
  let cancelled_at = Unix.gettimeofday () in
  Xenguest.cancel c;
  Thread.join t;
  assert_bool "cancelled" (Xenguest.is_cancelled c);
  (match !outcome with
  | Some (Error (Xenguest.Cancelled { step; message })) ->
      assert_bool ("step named: " ^ step) (step <> "");
      assert_bool message (contains ~sub:"[125] build cancelled" message)
  | Some (Ok ()) -> assert_failure "a 32 GiB build at 20 ms a call finished in 0.3 s"
  | Some (Error e) -> assert_failure ("expected Xenguest.Cancelled: " ^ Printexc.to_string e)
  | None -> assert_failure "no outcome");
  let after = !stopped_at -. cancelled_at in
  assert_bool (Printf.sprintf "stopped %.0f ms after the cancel" (after *. 1000.)) (after < 1.0);
  Xenguest_sim.set_call_latency sim ~us:0;
  assert_equal ~printer:string_of_int 0 (Xenguest_sim.outstanding_claims sim);
  Xenguest_sim.destroy_domain sim domid;
  assert_equal ~printer:string_of_int free (Xenguest_sim.free_pages sim);
  assert_equal (Ok ()) (Xenguest_sim.check_accounting sim)

(* A token set before the build: refused at once, nothing allocated. *)
let test_cancel_before_start _ =
  let sim = Xenguest_sim.create ~spec:"nodes=2,node_mib=8192" in
  let free = Xenguest_sim.free_pages sim in
  let domid = new_domain sim ~mem_mib:(4 * mib) in
  let c = Xenguest.cancel_token () in
  Xenguest.cancel c;
  (match Xenguest.hvm_build ~cancel:c (Xenguest_sim.handle sim) (hvm_args domid) with
  | _ -> assert_failure "expected Xenguest.Cancelled"
  | exception Xenguest.Cancelled { message; _ } ->
      (* Named by the mode: it never reached a step of its own. *)
      assert_bool message (contains ~sub:"hvm_build: [125] build cancelled" message));
  assert_equal ~printer:string_of_int free (Xenguest_sim.free_pages sim);
  assert_equal ~printer:string_of_int 0 (Xenguest_sim.outstanding_claims sim);
  (* An unset token changes nothing. *)
  let r, _ = Xenguest.hvm_build ~cancel:(Xenguest.cancel_token ()) (Xenguest_sim.handle sim)
      (hvm_args (new_domain sim ~mem_mib:(4 * mib))) in
  assert_equal ~printer:Nativeint.to_string 1044476n r.store_mfn

(* Each build's log lines reach its own ?log, builds on other threads apart; a failed build's
   lines arrive before its exception. *)
let test_log_lines _ =
  let sim = Xenguest_sim.create ~spec:"nodes=2,node_mib=40960" in
  let h = Xenguest_sim.handle sim in
  let args domid = { (hvm_args domid) with mem_max_mib = 2 * mib; mem_start_mib = 2 * mib } in
  let domids = List.init 8 (fun _ -> new_domain sim ~mem_mib:(2 * mib)) in
  let logs = Array.make 8 [] in
  let threads =
    List.mapi
      (fun i domid ->
        let a = args domid in
        let log level text = logs.(i) <- (level, text) :: logs.(i) in
        Thread.create (fun () -> ignore (Xenguest.hvm_build ~log h a)) ())
      domids
  in
  List.iter Thread.join threads;
  List.iteri
    (fun i domid ->
      let lines = List.rev logs.(i) in
      let own = Printf.sprintf "domid = %d; Determined the following parameters from xenstore (HVM):" domid in
      assert_bool ("own get_flags line, domid " ^ string_of_int domid) (List.mem (`Info, own) lines);
      List.iter
        (fun (_, text) ->
          if contains ~sub:"domid = " text then
            assert_bool ("another build's line: " ^ text) (contains ~sub:(Printf.sprintf "domid = %d;" domid) text))
        lines;
      assert_bool "the hole line" (List.mem (`Info, "Final lower MMIO hole size is 0x10000000") lines))
    domids;
  let domid = new_domain sim ~mem_mib:(2 * mib) in
  let seen = ref [] in
  let log _ text = seen := text :: !seen in
  (match Xenguest.hvm_build ~log h { (args domid) with image = "/nonexistent/hvmloader" } with
  | _ -> assert_failure "expected Xenguest.Error"
  | exception Xenguest.Error _ ->
      assert_bool "lines before the exception"
        (List.exists (contains ~sub:(Printf.sprintf "domid = %d; hvm_build: mem_max_mib" domid)) !seen));
  (* Without ?log nothing is delivered, and nothing is kept for a later build. *)
  ignore (Xenguest.hvm_build h (args (new_domain sim ~mem_mib:(2 * mib))));
  let later = ref 0 in
  let domid = new_domain sim ~mem_mib:(2 * mib) in
  ignore (Xenguest.hvm_build ~log:(fun _ t -> if contains ~sub:"domid = " t && not (contains ~sub:(Printf.sprintf "domid = %d;" domid) t) then incr later) h (args domid));
  assert_equal ~printer:string_of_int 0 !later

let temp_file_with contents =
  let path = Filename.temp_file "xenguest-test" ".bin" in
  let oc = open_out_bin path in
  output_string oc contents;
  close_out oc;
  path

let assert_writes_visible sim (report : Xenguest.report) =
  assert_bool "writes reported" (report.xenstore_writes <> []);
  List.iter
    (fun (k, v) -> assert_equal ~printer:(function Some v -> v | None -> "none") (Some v) (Xenguest_sim.read sim k))
    report.xenstore_writes

(* PVH: Debian's xen-shim with a module and its command line. *)
let test_pvh_build _ =
  let shim = "/usr/lib/xen-4.17/boot/xen-shim" in
  skip_if (not (Sys.file_exists shim)) "xen-shim not installed (xen-utils-4.17)";
  let sim = Xenguest_sim.create ~spec:"nodes=1,node_mib=4096" in
  let domid = new_domain sim ~mem_mib:mib in
  let kernel = temp_file_with (String.init 20000 (fun i -> Char.chr (i * 7 mod 253))) in
  let a =
    {
      (Xenguest.args ~domid ~mem_max_mib:mib ~mem_start_mib:mib ~image:shim ~store_port:1 ~console_port:2)
      with
      cmdline = "pv-shim console=xen,pv shim_mem=1024M";
      modules = [ (kernel, "root=/dev/xvda1") ];
    }
  in
  let result, report = Xenguest.pvh_build (Xenguest_sim.handle sim) a in
  Sys.remove kernel;
  assert_equal ~printer:Nativeint.to_string 1044476n result.store_mfn;
  assert_equal ~printer:Nativeint.to_string 1044479n result.console_mfn;
  assert_equal None result.protocol;
  assert_writes_visible sim report;
  assert_equal ~printer:string_of_int 0 (Xenguest_sim.domain sim domid).repopulated_pages;
  assert_equal (Ok ()) (Xenguest_sim.check_accounting sim)

(* PV: GRUB's x86_64-xen image (grub-xen-bin), machine frames and the guest ABI back. *)
let test_pv_build _ =
  skip_if
    (not (Sys.file_exists "/usr/lib/grub/x86_64-xen"))
    "grub-xen-bin not installed";
  let img = Filename.temp_file "pvgrub" ".elf" in
  let cmd =
    Printf.sprintf "grub-mkimage -O x86_64-xen -o %s -p '(xen/xvda,msdos1)/boot/grub' normal"
      (Filename.quote img)
  in
  assert_equal ~msg:cmd 0 (Sys.command cmd);
  let sim = Xenguest_sim.create ~spec:"nodes=1,node_mib=1024" in
  let domid = Xenguest_sim.create_domain sim ~hvm:false ~vcpus:2 ~max_mem_kib:((256 * 1024) + 1024) () in
  List.iter
    (fun k -> Xenguest_sim.write sim (Printf.sprintf "/local/domain/%d/platform/vcpu/%s" domid k) "2")
    [ "number"; "current" ];
  let a =
    {
      (Xenguest.args ~domid ~mem_max_mib:256 ~mem_start_mib:256 ~image:img ~store_port:7 ~console_port:8)
      with
      cmdline = "root=/dev/xvda1 console=hvc0";
    }
  in
  let result, report = Xenguest.pv_build (Xenguest_sim.handle sim) a in
  Sys.remove img;
  assert_equal (Some "x86_64-abi") result.protocol;
  assert_bool "distinct ring frames" (result.store_mfn <> result.console_mfn && result.store_mfn > 0n);
  assert_equal ~printer:string_of_int (256 * 256) (List.fold_left (fun acc (_, p) -> acc + p) 0 report.pages_by_order);
  assert_equal (Ok ()) (Xenguest_sim.check_accounting sim)

let () =
  run_test_tt_main
    ("xenguest"
    >::: [
           "hvm build on a simulated host" >:: test_hvm_build;
           "PoD and mem_pnode" >:: test_pod_and_node;
           "platform/mmio_size_mib with mmio_hole_size" >:: test_mmio_size_mib;
           "errors raise Xenguest.Error" >:: test_errors;
           "the build_args record, checked field by field" >:: test_args_record;
           "16 concurrent builds, exact accounting" >:: test_concurrent_builds;
           "64 builds contending for 1 GiB chunks" >:: test_64_contending_builds;
           "runtime lock released" >:: test_runtime_lock_released;
           "injected hypercall faults raise Xenguest.Error" >:: test_injected_xc_fault;
           "xenstore failure raises Xenguest.Error" >:: test_store_failure;
           "a Rust panic is an exception" >:: test_panic_is_an_exception;
           "pvh build (xen-shim)" >:: test_pvh_build;
           "pv build (pvgrub)" >:: test_pv_build;
           "a build cancelled from another thread" >:: test_cancel_from_another_thread;
           "a build with a cancelled token" >:: test_cancel_before_start;
           "log lines per build" >:: test_log_lines;
         ])
