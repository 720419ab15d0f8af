<#
.SYNOPSIS
  Run `benchdata run` at boot under Task Scheduler, restarted when it fails.

.DESCRIPTION
  Registers the scheduled task "BenchData Capture Service": starts at system start-up
  (no one needs to log in), runs as -User (default: a local service account you name, or
  SYSTEM), restarts every minute up to 999 times when it exits with an error, and never
  stops for running long. A second instance on the same store exits at once
  (service.lock), so restarts cannot start two services.

  BENCHDATA_HOME is set for the task's user (machine-wide) so the service and the people
  using the GUI/CLI on this PC agree on one store. Folders on network shares must be
  reachable by that account (use UNC paths in watch rules, not mapped drive letters).

.EXAMPLE
  .\install-service.ps1 -InstallDir "C:\Program Files\BenchData" -DataHome "D:\BenchData"
.EXAMPLE
  .\install-service.ps1 -User "LAB\svc-benchdata" -Password (Read-Host -AsSecureString)
.EXAMPLE
  .\install-service.ps1 -Uninstall
#>
[CmdletBinding()]
param(
    [string]$InstallDir = $PSScriptRoot,
    [string]$DataHome = "$env:ProgramData\BenchData",
    [string]$User = "SYSTEM",
    [SecureString]$Password,
    [string]$TaskName = "BenchData Capture Service",
    [switch]$Uninstall
)
$ErrorActionPreference = "Stop"

if ($Uninstall) {
    if (Get-ScheduledTask -TaskName $TaskName -ErrorAction SilentlyContinue) {
        Stop-ScheduledTask -TaskName $TaskName -ErrorAction SilentlyContinue
        Unregister-ScheduledTask -TaskName $TaskName -Confirm:$false
        Write-Host "Removed scheduled task '$TaskName' (data in $DataHome is kept)."
    }
    return
}

$exe = Join-Path $InstallDir "benchdata.exe"
if (-not (Test-Path $exe)) { throw "benchdata.exe not found in $InstallDir; pass -InstallDir" }

New-Item -ItemType Directory -Force -Path $DataHome | Out-Null
[Environment]::SetEnvironmentVariable("BENCHDATA_HOME", $DataHome, "Machine")

# The task runs cmd so BENCHDATA_HOME is set even before the machine environment reloads.
$action = New-ScheduledTaskAction -Execute "cmd.exe" `
    -Argument "/c set BENCHDATA_HOME=$DataHome&& `"$exe`" run" -WorkingDirectory $InstallDir
$trigger = New-ScheduledTaskTrigger -AtStartup
$settings = New-ScheduledTaskSettingsSet `
    -RestartCount 999 -RestartInterval (New-TimeSpan -Minutes 1) `
    -ExecutionTimeLimit ([TimeSpan]::Zero) `
    -MultipleInstances IgnoreNew `
    -AllowStartIfOnBatteries -DontStopIfGoingOnBatteries -StartWhenAvailable

if ($User -eq "SYSTEM") {
    $principal = New-ScheduledTaskPrincipal -UserId "SYSTEM" -LogonType ServiceAccount -RunLevel Limited
    Register-ScheduledTask -TaskName $TaskName -Action $action -Trigger $trigger `
        -Settings $settings -Principal $principal -Force | Out-Null
} else {
    if (-not $Password) { $Password = Read-Host "Password for $User" -AsSecureString }
    $plain = [Runtime.InteropServices.Marshal]::PtrToStringAuto(
        [Runtime.InteropServices.Marshal]::SecureStringToBSTR($Password))
    Register-ScheduledTask -TaskName $TaskName -Action $action -Trigger $trigger `
        -Settings $settings -User $User -Password $plain -RunLevel Limited -Force | Out-Null
    $plain = $null
}
Start-ScheduledTask -TaskName $TaskName
Write-Host "Registered and started '$TaskName' ($exe run, BENCHDATA_HOME=$DataHome)."
Write-Host "Check it with: `"$exe`" doctor   and   `"$exe`" logs -n 50"
