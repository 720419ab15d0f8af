; Inno Setup script: installs the PyInstaller folder (dist\benchdata) per machine.
;   1. On Windows: bash packaging/build.sh  (or the same pip/PyInstaller steps in PowerShell)
;   2. iscc packaging\windows\benchdata.iss   ->  dist\BenchDataSetup-<version>.exe
; Optional task: run the capture service at boot (install-service.ps1).
#define AppName "Bench Data Manager"
#define AppVersion GetEnv("BENCHDATA_VERSION")
#if AppVersion == ""
  #define AppVersion "0.1.0"
#endif

[Setup]
AppId={{6F1C2E4B-7A0B-4C55-9E3D-BD2A1C0E5A71}
AppName={#AppName}
AppVersion={#AppVersion}
AppPublisher=Lab IT
DefaultDirName={autopf}\BenchData
DefaultGroupName={#AppName}
DisableProgramGroupPage=yes
PrivilegesRequired=admin
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
OutputDir=..\..\dist
OutputBaseFilename=BenchDataSetup-{#AppVersion}
Compression=lzma2
SolidCompression=yes
WizardStyle=modern
UninstallDisplayIcon={app}\BenchData.exe
; The data (store, files, logs) lives in the user's or the service's data folder and is
; never removed by the uninstaller.

[Tasks]
Name: "desktopicon"; Description: "Create a desktop shortcut"; Flags: unchecked
Name: "service"; Description: "Run the capture service at boot (even when nobody is logged in)"; Flags: unchecked
Name: "path"; Description: "Add benchdata to PATH"; Flags: unchecked

[Files]
Source: "..\..\dist\benchdata\*"; DestDir: "{app}"; Flags: recursesubdirs createallsubdirs ignoreversion
Source: "install-service.ps1"; DestDir: "{app}"; Flags: ignoreversion
Source: "..\..\docs\operations.md"; DestDir: "{app}\docs"; Flags: ignoreversion skipifsourcedoesntexist

[Icons]
Name: "{group}\{#AppName}"; Filename: "{app}\BenchData.exe"
Name: "{group}\Bench Data Manager doctor"; Filename: "{cmd}"; Parameters: "/k ""{app}\benchdata.exe"" doctor"
Name: "{autodesktop}\{#AppName}"; Filename: "{app}\BenchData.exe"; Tasks: desktopicon

[Registry]
Root: HKLM; Subkey: "SYSTEM\CurrentControlSet\Control\Session Manager\Environment"; ValueType: expandsz; ValueName: "Path"; ValueData: "{olddata};{app}"; Tasks: path; Check: NeedsAddPath(ExpandConstant('{app}'))

[Run]
Filename: "powershell.exe"; Parameters: "-NoProfile -ExecutionPolicy Bypass -File ""{app}\install-service.ps1"" -InstallDir ""{app}"""; Tasks: service; Flags: runhidden waituntilterminated; StatusMsg: "Registering the capture service..."
Filename: "{app}\BenchData.exe"; Description: "Open Bench Data Manager"; Flags: postinstall nowait skipifsilent unchecked

[UninstallRun]
Filename: "powershell.exe"; Parameters: "-NoProfile -ExecutionPolicy Bypass -File ""{app}\install-service.ps1"" -Uninstall"; Flags: runhidden; RunOnceId: "RemoveBenchDataTask"

[Code]
function NeedsAddPath(Dir: string): Boolean;
var
  OrigPath: string;
begin
  if not RegQueryStringValue(HKEY_LOCAL_MACHINE,
    'SYSTEM\CurrentControlSet\Control\Session Manager\Environment', 'Path', OrigPath) then
  begin
    Result := True;
    exit;
  end;
  Result := Pos(';' + Uppercase(Dir) + ';', ';' + Uppercase(OrigPath) + ';') = 0;
end;
